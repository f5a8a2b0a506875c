"""ModelCheckpoint and EarlyStopping from the config sections of the same names."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import Callback, EarlyStopping

from dsf_dist.config.schema import CheckpointConfig, EarlyStoppingConfig
from dsf_dist.hooks.preemption import AtomicModelCheckpoint


def checkpoint_callback(cfg: CheckpointConfig, folder: Path) -> AtomicModelCheckpoint:
    return AtomicModelCheckpoint(
        dirpath=folder,
        filename="epoch{epoch:03d}-step{step:06d}",
        auto_insert_metric_name=False,
        monitor=cfg.monitor,
        mode=cfg.mode,
        save_top_k=cfg.save_top_k,
        save_last=cfg.save_last,
        every_n_epochs=cfg.every_n_epochs,
    )


def early_stopping_callback(cfg: EarlyStoppingConfig) -> list[Callback]:
    if not cfg.enabled:
        return []
    return [EarlyStopping(monitor=cfg.monitor, mode=cfg.mode, patience=cfg.patience, min_delta=cfg.min_delta)]
