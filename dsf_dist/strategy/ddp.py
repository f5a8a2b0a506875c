"""DDP: one process per device; `ddp` starts them by re-running the command (or joins torchrun/srun),
`ddp_spawn` spawns them with multiprocessing."""

from __future__ import annotations

from datetime import timedelta

from pytorch_lightning.strategies import DDPStrategy

from dsf_dist.config.strategy import StrategyConfig


def build(cfg: StrategyConfig, on_gpu: bool) -> DDPStrategy:
    return DDPStrategy(
        start_method="spawn" if cfg.name == "ddp_spawn" else "popen",
        timeout=timedelta(seconds=cfg.timeout_s),
        **cfg.ddp.model_dump(),
    )
