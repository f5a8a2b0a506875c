"""Config -> a Lightning Strategy. The only layer that knows strategy classes (FSDP and DeepSpeed join here).

Each family has its own module with a `build(cfg)`; `build_strategy` dispatches on `strategy.name`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsf_dist.strategy import ddp

if TYPE_CHECKING:
    from pytorch_lightning.strategies import Strategy

    from dsf_dist.config.schema import StrategyConfig

BUILDERS = {"ddp": ddp.build, "ddp_spawn": ddp.build}


def build_strategy(cfg: StrategyConfig) -> Strategy | str:
    """'auto' leaves the choice to Lightning (one process on CPU); the rest build a Strategy object."""
    if cfg.name == "auto":
        return "auto"
    return BUILDERS[cfg.name](cfg)
