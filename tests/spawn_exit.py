"""A callback for the session's ddp_spawn run (tests/shared_runs.py): each spawned rank writes, as its interpreter
exits, whether its process group was still open then. A group left open can abort a rank at exit (SIGABRT), so dsf's
ddp_spawn ranks close theirs together at the end of each phase (dsf_dist/strategy/ddp.py)."""

from __future__ import annotations

import atexit
import json
from pathlib import Path

import torch.distributed as dist
from pytorch_lightning import Callback


class GroupAtExit(Callback):
    def __init__(self, log: str) -> None:
        self.prefix = log  # each rank writes <log>-rank<R>.json, in the folder the run started in

    def setup(self, trainer, pl_module, stage: str) -> None:
        rank, path = trainer.global_rank, Path(f"{self.prefix}-rank{trainer.global_rank}.json").resolve()
        atexit.register(lambda: path.write_text(json.dumps({"rank": rank, "open": dist.is_initialized()})))
