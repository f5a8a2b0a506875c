"""Config -> a Lightning Strategy. The only layer that names strategy classes or imports FSDP / DeepSpeed.

Each family has its own module with `build(cfg, on_gpu)`; modules load on demand, so DeepSpeed is
imported only when a config asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytorch_lightning.strategies import Strategy

    from dsf_dist.config.strategy import StrategyConfig

MODULES = {"ddp": "ddp", "ddp_spawn": "ddp", "fsdp": "fsdp", "deepspeed": "deepspeed"}

# Strategies whose ranks 1..N-1 Lightning starts by re-running the command line (unless a launcher
# such as torchrun or srun already started them).
RERUN_LAUNCHED = {"ddp", "fsdp", "deepspeed"}


def on_gpu(trainer: dict[str, Any]) -> bool:
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def build_strategy(cfg: StrategyConfig, trainer: dict[str, Any]) -> Strategy | str:
    """'auto' leaves the choice to Lightning (one process on CPU); the rest build a Strategy object."""
    if cfg.name == "auto":
        return "auto"
    module = importlib.import_module(f"dsf_dist.strategy.{MODULES[cfg.name]}")
    return module.build(cfg, on_gpu(trainer))
