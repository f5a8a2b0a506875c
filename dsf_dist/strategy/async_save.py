"""Checkpoint writes in the background (checkpoint.async_save): the strategy side.

The training loop waits only while the state is copied to host memory; the write runs in a background thread and
leaves its Future in `pending_write`, which the checkpoint hook (dsf_dist/hooks/checkpoint.py) takes, waits for
before the next save, and renames into place when it completes.

- single-file checkpoints (one process, DDP, FSDP with state_dict: full): BackgroundFileIO, a CheckpointIO;
- FSDP2's sharded checkpoints: torch.distributed.checkpoint.async_save (dsf_dist/strategy/fsdp.py), on a gloo
  group of its own so that its collectives never interleave with training's (FACTS.md);
- DeepSpeed: saves stay synchronous. DeepSpeed's own asynchronous engines (Nebula, the decoupled and fast
  checkpoint engines) need Azure's Nebula service or DeepSpeed's async_io op with its writer configuration; dsf
  does not drive them, and says so once.
"""

from __future__ import annotations

import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.strategies import DeepSpeedStrategy, FSDPStrategy, Strategy
from torch.utils._pytree import tree_map

from dsf_dist.launchers.environment import resolve
from dsf_dist.strategy.fsdp import FSDP2Strategy


class BackgroundFileIO(TorchCheckpointIO):
    def __init__(self) -> None:
        super().__init__()
        self.pending_write: Future | None = None
        self._writer: ThreadPoolExecutor | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        staged = to_host(checkpoint)  # the only part the training loop waits for
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsf-checkpoint-write")
        self.pending_write = self._writer.submit(write, staged, Path(path))

    def teardown(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None


def write(state: dict[str, Any], path: Path) -> None:
    """torch.save straight into the file: the path is already a staging name that is renamed into place once
    the write is complete (dsf_dist/hooks/checkpoint.py), so Lightning's own buffered atomic write is not needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def to_host(state: Any) -> Any:
    """A copy of every tensor in host memory (a clone for tensors already there, which training keeps updating);
    other values as they are (the checkpoint dict is built afresh for every save)."""
    return tree_map(lambda value: value.detach().to("cpu", copy=True) if torch.is_tensor(value) else value, state)


def enable_async_save(strategy: Strategy) -> None:
    """Make `strategy` write checkpoints in the background where it can; say once where it cannot."""
    if isinstance(strategy, DeepSpeedStrategy):
        refuse("DeepSpeed writes its checkpoints itself, synchronously")
    elif isinstance(strategy, FSDP2Strategy) and strategy.options.state_dict == "sharded":
        strategy.async_save = True
    elif isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "sharded":
        refuse("FSDP1's sharded checkpoints (GPU) are written synchronously; set strategy.fsdp.state_dict=full")
    else:
        strategy.checkpoint_io = BackgroundFileIO()


def refuse(reason: str) -> None:
    if resolve().is_rank_zero:
        print(f"dsf: checkpoint.async_save: {reason}, so each save blocks for its whole write", file=sys.stderr)
