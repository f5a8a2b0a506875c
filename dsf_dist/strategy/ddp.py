"""DDP: one process per device; `ddp` starts them by re-running the command (or joins torchrun/srun),
`ddp_spawn` spawns them with multiprocessing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

from dsf_dist.config.strategy import StrategyConfig


def build(cfg: StrategyConfig, on_gpu: bool) -> DDPStrategy:
    strategy = SpawnedRanksLeaveTogether if cfg.name == "ddp_spawn" else DDPStrategy
    return strategy(
        start_method="spawn" if cfg.name == "ddp_spawn" else "popen",
        timeout=timedelta(seconds=cfg.timeout_s),
        **cfg.ddp.model_dump(),
    )


class SpawnedRanksLeaveTogether(DDPStrategy):
    """`ddp_spawn`, whose ranks close their process group together when a phase (fit, test) ends.

    A spawned rank returns from Lightning's function and exits with its process group still open, and a rank
    whose peer has already gone can abort at interpreter exit (SIGABRT, "terminate called without an active
    exception": seen once here at the end of a test phase). `dsf`'s own entry point destroys the group for the ranks
    it runs (entry.close_process_group); spawned ranks never reach it."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        self._launcher = LeaveTogetherLauncher(self, start_method=self._start_method)


class LeaveTogetherLauncher(_MultiProcessingLauncher):
    def _wrapping_function(self, *args: Any, **kwargs: Any) -> None:
        super()._wrapping_function(*args, **kwargs)
        # Only after a phase that ended well on this rank: a failed one exits, and spawn ends the others.
        if dist.is_initialized():
            self._strategy.barrier()  # no rank is still in a collective when the first one closes its connections
            dist.destroy_process_group()
