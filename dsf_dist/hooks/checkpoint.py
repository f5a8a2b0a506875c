"""Checkpoints that appear whole or not at all, and ModelCheckpoint and EarlyStopping from the config sections
of the same names.

Every checkpoint, of any strategy (a file, or a DeepSpeed / FSDP folder), is written under a staging name beside
its target and renamed into place once all ranks have finished writing, so a crash mid-save leaves the previous
last.ckpt in place, never a torn one.

- checkpoint.every_n_train_steps also saves last.ckpt every N steps, for a resume after a kill; the best-k are still
  chosen at epoch ends.
- checkpoint.async_save: the loop waits only while the state is copied to host memory; the write and the rename
  happen in the background (dsf_dist/strategy/async_save.py). At most one write is in flight: a later save first
  waits for it, and fit waits for the last one before it returns (so test, a requeue and the exit see it whole).
  Checkpoints that top-k replaces are removed only once their successor is in place.
- The bookkeeping saved in each checkpoint (best, last, top-k paths) is relative to the checkpoint folder, so a
  run folder that was moved resumes its own newest checkpoint and prunes its own best-k.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any
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
        every_n_steps=cfg.every_n_train_steps,
        background=cfg.async_save,
    )


def early_stopping_callback(cfg: EarlyStoppingConfig) -> list[Callback]:
    if not cfg.enabled:
        return []
    return [EarlyStopping(monitor=cfg.monitor, mode=cfg.mode, patience=cfg.patience, min_delta=cfg.min_delta)]


class AtomicModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that writes each checkpoint under a staging name, then renames it into place."""

    def __init__(self, *args: Any, every_n_steps: int | None = None, background: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.every_n_steps = every_n_steps
        self.background = background
        # Per save: its step, when it started (perf_counter), seconds the loop was blocked, seconds until in place.
        self.timings: list[dict[str, float]] = []
        self._completing: Future | None = None  # the background write in flight, and its rename into place
        self._completer: ThreadPoolExecutor | None = None
        self._doomed: list[Path] = []  # checkpoints to remove once the write in flight is in place

    @property
    def state_key(self) -> str:
        # The key Lightning's ModelCheckpoint stores its state under, so checkpoints of either class resume.
        # Cached: Lightning reads it for every hook call, and building it costs more than a small step.
        if not hasattr(self, "_state_key"):
            self._state_key = super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)
        return self._state_key

    # -- bookkeeping relative to the checkpoint folder ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        inside = lambda path: relative_to(path, self.dirpath)  # noqa: E731
        return {
            **state,
            "dirpath": RELATIVE,
            "best_model_path": inside(state["best_model_path"]),
            "kth_best_model_path": inside(state["kth_best_model_path"]),
            "last_model_path": inside(state["last_model_path"]),
            "best_k_models": {inside(path): score for path, score in state["best_k_models"].items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Paths in this checkpoint folder, wherever it now is: relative ones (written by state_dict) and the absolute
        ones of older checkpoints, whose folder may since have moved."""
        saved = state_dict.get("dirpath", self.dirpath)
        base = "" if saved == RELATIVE else saved
        here = lambda path: moved(path, base, self.dirpath)  # noqa: E731
        super().load_state_dict(
            {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": here(state_dict.get("best_model_path", "")),
                "kth_best_model_path": here(state_dict.get("kth_best_model_path", "")),
                "last_model_path": here(state_dict.get("last_model_path", "")),
                "best_k_models": {here(path): score for path, score in state_dict.get("best_k_models", {}).items()},
            }
        )

    # -- when to save ---------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and not self._should_skip_saving_checkpoint(trainer):
            # Saved without counting as this step's save, so that the epoch-end best-k still happens.
            before = self._last_global_step_saved
            self.save_last_now(trainer, wait=False)
            self._last_global_step_saved = before

    def save_last_now(self, trainer: pl.Trainer, wait: bool = True) -> str:
        """Every rank: save last.ckpt at the current step (a collective); its path. wait: return only once it is
        in place (a preemption stop)."""
        path = os.path.join(self.dirpath, f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        self.last_model_path = path  # before saving: it is part of the saved state
        self._save_checkpoint(trainer, path)
        if wait:
            self.wait_for_writes(trainer)
        return path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wait_for_writes(trainer)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # After a failure too: a write in flight is finished (or found torn and left under its staging name).
        with suppress(Exception):
            self.wait_for_writes(trainer)
        if self._completer is not None:
            self._completer.shutdown(wait=True)
            self._completer = None

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if self._completing is None:
            super()._remove_checkpoint(trainer, filepath)
        elif trainer.is_global_zero:
            self._doomed.append(Path(filepath))  # removed once the checkpoint replacing it is whole

    # -- how to save ----------------------------------------------------------------------------------------
    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        watchdog = watchdog_of(trainer)
        with watchdog.phase("checkpoint") if watchdog else nullcontext():
            self.wait_for_writes(trainer)  # at most one write in flight
            self._save_staged(trainer, Path(filepath))

    def _save_staged(self, trainer: pl.Trainer, target: Path) -> None:
        staging = target.with_name(f".{target.name}.partial")
        # The same answer on every rank (a rank that writes nothing, as DDP's rank 1, has no write to wait for).
        background = self.background and writes_in_background(trainer.strategy)
        started = time.perf_counter()
        try:
            if trainer.is_global_zero:
                remove(staging)  # a torn one from a crash; DeepSpeed would write into it
            trainer.strategy.barrier()
            trainer.save_checkpoint(staging, self.save_weights_only)  # every rank writes its part; ends in a barrier
            write = take_pending_write(trainer.strategy) if background else None
            if not background and trainer.is_global_zero:
                publish(staging, target)
        except (OSError, RuntimeError) as err:
            raise self._write_failed(err, staging, target) from None
        blocked = time.perf_counter() - started
        self.timings.append({"step": trainer.global_step, "started": started, "blocked_s": blocked, "write_s": blocked})
        if background:
            self._completing = self._background().submit(
                self._complete, write, staging, target, trainer.is_global_zero, started
            )
        else:
            trainer.strategy.barrier()
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = str(target)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def _write_failed(self, err: BaseException, staging: Path, target: Path) -> BaseException:
        if not is_write_failure(err):
            return err
        # The previous checkpoint was never touched: only the staging copy is torn. The other ranks wait in
        # the next collective and stop when this rank exits (dsf_dist/hooks/watchdog.py).
        remove_quietly(staging)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:120]
        return CheckpointWriteError(
            f"{target}: cannot write the checkpoint ({reason}); the previous checkpoints are kept. "
            f"Free space in or make writable {target.parent}, then rerun with --resume"
        )

    def _background(self) -> ThreadPoolExecutor:
        if self._completer is None:
            self._completer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsf-checkpoint")
        return self._completer

    def _complete(self, write: Future | None, staging: Path, target: Path, publishes: bool, started: float) -> None:
        """In the background: wait for this rank's write (if it has one); rank zero then renames the checkpoint into
        place (its write ends after every rank's part is written) and removes the ones it replaced."""
        if write is not None:
            write.result()
        if publishes:
            publish(staging, target)
            for doomed in self._doomed:
                remove(doomed)
            self._doomed.clear()
        self.timings[-1]["write_s"] = time.perf_counter() - started

    def stall_summary(self) -> dict[str, float] | None:
        """This fit's saves: how many, and the mean seconds the loop was blocked per save and each took to be
        written and in place (the same for synchronous saves); None without a save."""
        if not self.timings:
            return None
        mean = lambda key: round(sum(t[key] for t in self.timings) / len(self.timings), 4)  # noqa: E731
        return {"saves": len(self.timings), "blocked_s": mean("blocked_s"), "written_s": mean("write_s")}

    def wait_for_writes(self, trainer: pl.Trainer) -> None:
        """Every rank: the write in flight is finished and (rank zero) renamed into place."""
        completing, self._completing = self._completing, None
        if completing is None:
            return
        try:
            completing.result()
        except (OSError, RuntimeError) as err:
            target = Path(self._last_checkpoint_saved)
            raise self._write_failed(err, target.with_name(f".{target.name}.partial"), target) from None


RELATIVE = "."  # the dirpath saved in a checkpoint whose bookkeeping paths are relative to its folder


def relative_to(path: str, folder: str | None) -> str:
    """`path` relative to `folder` when inside it (bookkeeping of this run); others stay as they are."""
    if not path or not folder or not os.path.isabs(path):
        return path
    inside = os.path.relpath(path, folder)
    return path if inside.startswith("..") else inside


def moved(path: str, saved_folder: str, folder: str | None) -> str:
    """A saved bookkeeping path in this checkpoint folder: relative ones, and absolute ones under the folder the
    checkpoint was saved in (before the run folder moved)."""
    if not path or folder is None:
        return path
    if not os.path.isabs(path):
        return os.path.join(folder, path)
    if saved_folder and os.path.isabs(saved_folder) and Path(path).is_relative_to(saved_folder):
        return os.path.join(folder, os.path.relpath(path, saved_folder))
    return path


def writes_in_background(strategy: Any) -> bool:
    """checkpoint.async_save took effect for this strategy (dsf_dist/strategy/async_save.py): FSDP2's sharded saves,
    or a background CheckpointIO for single files; DeepSpeed's stay synchronous."""
    return bool(getattr(strategy, "async_save", False)) or hasattr(
        getattr(strategy, "checkpoint_io", None), "pending_write"
    )


def take_pending_write(strategy: Any) -> Future | None:
    """The background write that the strategy (or its CheckpointIO) started for the save just made, if any
    (dsf_dist/strategy/async_save.py); None when that save was written synchronously."""
    for holder in (strategy, getattr(strategy, "checkpoint_io", None)):
        write = getattr(holder, "pending_write", None)
        if write is not None:
            holder.pending_write = None
            return write
    return None


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
