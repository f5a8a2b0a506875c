"""Checkpoints that appear whole or not at all, and ModelCheckpoint and EarlyStopping from the config sections
of the same names.

Every checkpoint, of any strategy (a file, or a DeepSpeed / FSDP folder), is written under a staging name beside
its target and renamed into place once all ranks have finished writing, so a crash mid-save leaves the previous
last.ckpt in place, never a torn one.
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext, suppress
from pathlib import Path
from weakref import proxy

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint

from dsf_dist.config.schema import CheckpointConfig, EarlyStoppingConfig
from dsf_dist.errors import DsfError
from dsf_dist.hooks.watchdog import watchdog_of
from dsf_dist.run_folder import set_aside


def checkpoint_callback(cfg: CheckpointConfig, folder: Path, monitor: str | None) -> AtomicModelCheckpoint:
    """`monitor` is checkpoint.monitor, or None for a model that logs no validation metric: the last is the best."""
    return AtomicModelCheckpoint(
        dirpath=folder,
        filename="epoch{epoch:03d}-step{step:06d}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode=cfg.mode,
        save_top_k=cfg.save_top_k,
        save_last=cfg.save_last,
        every_n_epochs=cfg.every_n_epochs,
    )


def early_stopping_callback(cfg: EarlyStoppingConfig) -> list[Callback]:
    if not cfg.enabled:
        return []
    return [EarlyStopping(monitor=cfg.monitor, mode=cfg.mode, patience=cfg.patience, min_delta=cfg.min_delta)]


class AtomicModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that writes each checkpoint under a staging name, then renames it into place."""

    @property
    def state_key(self) -> str:
        # The key Lightning's ModelCheckpoint stores its state under, so checkpoints of either class resume.
        # Cached: Lightning reads it for every hook call, and building it costs more than a small step.
        if not hasattr(self, "_state_key"):
            self._state_key = super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)
        return self._state_key

    def save_last_now(self, trainer: pl.Trainer) -> str:
        """Every rank: save last.ckpt at the current step (a collective); its path."""
        path = os.path.join(self.dirpath, f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        self.last_model_path = path  # before saving: it is part of the saved state
        self._save_checkpoint(trainer, path)
        return path

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        watchdog = watchdog_of(trainer)
        with watchdog.phase("checkpoint") if watchdog else nullcontext():
            self._save_staged(trainer, Path(filepath))

    def _save_staged(self, trainer: pl.Trainer, target: Path) -> None:
        staging = target.with_name(f".{target.name}.partial")
        try:
            if trainer.is_global_zero:
                remove(staging)  # a torn one from a crash; DeepSpeed would write into it
            trainer.strategy.barrier()
            trainer.save_checkpoint(staging, self.save_weights_only)  # every rank writes its part; ends in a barrier
            if trainer.is_global_zero:
                publish(staging, target)
        except (OSError, RuntimeError) as err:
            if not is_write_failure(err):
                raise
            # The previous checkpoint was never touched: only the staging copy is torn. The other ranks wait in
            # the next collective and stop when this rank exits (dsf_dist/hooks/watchdog.py).
            remove_quietly(staging)
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:120]
            raise CheckpointWriteError(
                f"{target}: cannot write the checkpoint ({reason}); the previous checkpoints are kept. "
                f"Free space in or make writable {target.parent}, then rerun with --resume"
            ) from None
        trainer.strategy.barrier()
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = str(target)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class CheckpointWriteError(DsfError):
    """A checkpoint could not be written (disk full, read-only or unwritable folder)."""


WRITE_FAILURES = ("No space left", "file write failed", "Read-only file system", "Permission denied", "Disk quota")


def is_write_failure(err: BaseException) -> bool:
    # torch's zip writer and DeepSpeed report a failed write as a RuntimeError that carries the OS's words.
    return isinstance(err, OSError) or any(sign in str(err) for sign in WRITE_FAILURES)


def remove_quietly(path: Path) -> None:
    with suppress(OSError):  # the same full or read-only disk: the torn copy stays, named .partial, never loaded
        remove(path)


def publish(staging: Path, target: Path) -> None:
    """Rank zero: make `staging` durable, then rename it to `target`. A file replaces the old one in one rename;
    a folder cannot, so the old one is first set aside, and resume falls back to it (run_folder.resumable)
    if a crash comes between the two renames."""
    sync(staging)
    aside = set_aside(target)
    if staging.is_dir() or target.is_dir():
        remove(aside)
        if target.exists() or target.is_symlink():
            os.replace(target, aside)
        os.replace(staging, target)
        remove(aside)
    else:
        os.replace(staging, target)
    sync_folder(target.parent)


def sync(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    if path.is_dir():
        for folder in [path, *(p for p in path.rglob("*") if p.is_dir())]:
            sync_folder(folder)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
