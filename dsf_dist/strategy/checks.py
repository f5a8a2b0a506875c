"""Impossible combinations, refused before any worker starts: one ConfigError line each.

`check_config` needs no torch (it runs when the config loads); `check_model` runs once the model
is built, before the run folder is created.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from dsf_dist.config.schema import DsfConfig
from dsf_dist.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

FP16_ONLY_ON_GPU = {16, "16", "16-mixed", "16-true", "transformer-engine", "transformer-engine-float16"}


def check_config(cfg: DsfConfig) -> None:
    strategy, trainer = cfg.strategy, cfg.trainer
    if strategy.name == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("strategy.name: deepspeed is not installed; pip install 'dsf-dist[deepspeed]'")
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator == "cpu":
        precision = trainer.get("precision")
        if precision in FP16_ONLY_ON_GPU:
            raise ConfigError(f"trainer.precision: {precision!r} needs a GPU; on CPU use 'bf16-mixed' or '32-true'")
        if strategy.name == "fsdp" and strategy.fsdp.mixed_precision == "fp16":
            raise ConfigError("strategy.fsdp.mixed_precision: fp16 needs a GPU; on CPU use bf16 or none")
        _check_count(trainer.get("devices"), os.cpu_count() or 1, "CPU cores")
    elif accelerator in ("gpu", "cuda"):
        import torch

        _check_count(trainer.get("devices"), torch.cuda.device_count(), "GPUs")


def _check_count(devices: object, available: int, what: str) -> None:
    wanted = len(devices) if isinstance(devices, list) else devices
    if isinstance(wanted, int) and wanted > available:
        raise ConfigError(
            f"trainer.devices: {wanted} asked but this machine has {available} {what}; "
            f"use at most {available} (or a launcher across nodes)"
        )


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
