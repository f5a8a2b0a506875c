"""Checks that need the built model, before the run folder exists: the FSDP classes the config names are in it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsf_dist.config.schema import DsfConfig
from dsf_dist.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


def check_model(cfg: DsfConfig, model: nn.Module) -> None:
    if cfg.strategy.name != "fsdp":
        return
    present = sorted({type(module).__name__ for module in model.modules()})
    for key in ("wrap_modules", "activation_checkpointing"):
        for name in getattr(cfg.strategy.fsdp, key):
            if name not in present:
                raise ConfigError(
                    f"strategy.fsdp.{key}: '{name}' is not a module class in the model "
                    f"(it has {', '.join(present)}); fix the class name"
                )
