"""A callback for the session's ZeRO-3 run (tests/shared_runs.py): after its last training step, each rank writes
whether DeepSpeed's prefetch trace is complete (`PartitionedParameterCoordinator.is_complete_trace`). ZeRO-3
prefetches parameters along a trace recorded in one step; under Lightning the trace broke in every step until dsf
started it once per step (dsf_dist/strategy/deepspeed.py: reset_trace_once_per_step), so the state is the check."""

from __future__ import annotations

import json
from pathlib import Path

from pytorch_lightning import Callback


class TraceState(Callback):
    def __init__(self, log: str) -> None:
        self.prefix = log  # each rank writes <log>-rank<R>.json
        self.complete: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        coordinator = trainer.strategy.model.optimizer.parameter_offload.get_param_coordinator()
        self.complete.append(coordinator.is_complete_trace())

    def on_train_end(self, trainer, pl_module) -> None:
        state = {"rank": trainer.global_rank, "complete": self.complete}  # after each training step
        Path(f"{self.prefix}-rank{trainer.global_rank}.json").write_text(json.dumps(state))
