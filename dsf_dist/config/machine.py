"""A valid config checked against this machine: the files it names, the devices and packages it needs.

Torch-free (a GPU count is the one exception, asked only when the config wants GPUs): these checks run when a
config loads, so `dsf config --check` and every verb refuse an impossible run in one line before any worker.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from dsf_dist.config.schema import DsfConfig
from dsf_dist.errors import ConfigError
from dsf_dist.imports import unresolvable

FP16_ONLY_ON_GPU = {16, "16", "16-mixed", "16-true", "transformer-engine", "transformer-engine-float16"}
EXPORT_FILES = ("model.safetensors", "config.yaml")  # what `dsf export` writes
HF_CONFIG = "config.json"  # what save_pretrained writes


def check_against_machine(cfg: DsfConfig) -> None:
    check_files(cfg)
    check_import_paths(cfg)
    check_strategy(cfg)
    check_logger_packages(cfg)


def check_files(cfg: DsfConfig) -> None:
    """Files the config names must exist now, not hours later on the cluster."""
    named = {
        "data.path": cfg.data.path,
        "data.test_path": cfg.data.test_path,
        "strategy.deepspeed.config": cfg.strategy.deepspeed.config,
    }
    if cfg.existing_model.kind in ("checkpoint", "previous", "pretrained"):
        named["existing_model.path"] = cfg.existing_model.path
    for key, value in named.items():
        if value is not None and not Path(value).exists():
            raise ConfigError(
                f"{key}: {value} does not exist; fix the path (relative paths start at the working folder)"
            )
    record = Path(cfg.existing_model.path or ".") / "results" / "train.json"
    if cfg.existing_model.kind == "previous" and not record.is_file():
        raise ConfigError(
            f"existing_model.path: {record} missing; give a run folder that `dsf train` or `dsf run` made"
        )
    folder = Path(cfg.existing_model.path or ".")
    missing = [name for name in EXPORT_FILES if not (folder / name).is_file()]
    if cfg.existing_model.kind == "pretrained" and missing and not (folder / HF_CONFIG).is_file():
        raise ConfigError(
            f"existing_model.path: {folder} has no {' or '.join(missing)}; give a folder `dsf export` wrote"
        )


def check_import_paths(cfg: DsfConfig) -> None:
    """The code the config names by 'pkg.mod:name' must be there, found without running it (dsf_dist/imports.py):
    a config check neither imports torch through a user's module nor runs its side effects."""
    named = {
        "model.network": cfg.model.network,
        "model.module": cfg.model.module,
        "data.dataset": cfg.data.dataset,
        "data.datamodule": cfg.data.datamodule,
        **{f"callbacks.{i}.target": callback.target for i, callback in enumerate(cfg.callbacks)},
    }
    if cfg.existing_model.kind == "callable":
        named["existing_model.target"] = cfg.existing_model.target
    for key, path in named.items():
        problem = unresolvable(path) if path and ":" in path else None
        if problem:
            raise ConfigError(f"{key}: {path}: {problem}")


def check_strategy(cfg: DsfConfig) -> None:
    """What the strategy and trainer ask of this machine: DeepSpeed installed, fp16 only on GPUs, enough devices."""
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

        available = torch.cuda.device_count()
        # devices "auto" is left to where the ranks run (the Ray driver asks so: its head may have no GPU).
        if available == 0 and trainer.get("devices") != "auto":
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA device"
            raise ConfigError(
                f"trainer.accelerator: {accelerator!r} asked but this machine has no GPU ({why}); use "
                "trainer.accelerator=cpu here, or run on a GPU machine (`dsf doctor` shows what it has)"
            )
        _check_count(trainer.get("devices"), available, "GPUs")


def _check_count(devices: object, available: int, what: str) -> None:
    wanted = len(devices) if isinstance(devices, list) else devices
    if isinstance(wanted, int) and wanted > available:
        raise ConfigError(
            f"trainer.devices: {wanted} asked but this machine has {available} {what}; "
            f"use at most {available} (or a launcher across nodes)"
        )


def check_logger_packages(cfg: DsfConfig) -> None:
    """A logger whose package is missing is refused before any run folder exists."""
    for name, package in (("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
        if name in cfg.logging.loggers and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"logging.loggers: {name} needs the {package} package; run `dsf install-trainer-packages loggers`"
            )
