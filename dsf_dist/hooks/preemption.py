"""Preemption that loses nothing (DESIGN.md rule 4), and checkpoints that appear whole or not at all.

- SIGUSR1 (SLURM's warning before the time limit, or `scancel --signal=USR1`) and SIGTERM only set a flag.
- About twice a second, at a step they all agree on, the ranks combine their flags (an all-reduce); when any
  rank was signalled, every
  rank saves `last.ckpt` together, rank zero requeues the SLURM job (launch/requeue.py), and training stops
  on every rank with `Preempted`. The restarted job resumes from that checkpoint (run.resume=auto).
- Every checkpoint, of any strategy (a file, or a DeepSpeed / FSDP folder), is written under a staging name
  beside its target and renamed into place once all ranks have finished writing, so a crash mid-save
  leaves the previous last.ckpt in place, never a torn one.
- A resumed fit keeps logs/metrics.csv whole (TrainingLog): the rows logged before the stop stay.

Lightning's own handlers are replaced, not stacked on: its SLURM auto-requeue checkpoints inside the signal
handler (dsf passes SLURMEnvironment(auto_requeue=False)), and its SIGTERM handler runs a collective inside
the handler. The flag handlers stay installed after fit, so a signal during test or eval lets the run finish.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import threading
import time
from contextlib import nullcontext, suppress
from pathlib import Path
from types import FrameType
from typing import Any
from weakref import proxy

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from dsf_dist.errors import DsfError
from dsf_dist.hooks.watchdog import watchdog_of
from dsf_dist.io import write_text
from dsf_dist.launch import requeue
from dsf_dist.run_folder import set_aside

# Stop requests, weakest first; all ranks take the strongest any rank received (SIGTERM: stop, do not requeue).
REQUESTS = (None, signal.SIGUSR1, signal.SIGTERM)


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


class Preemption(Callback):
    """Stop at the first step boundary after SIGUSR1 or SIGTERM reached any rank, with last.ckpt saved.

    SIGUSR1 (SLURM's notice before the time limit) also requeues the job. SIGTERM does not: under SLURM it
    means the job was cancelled, hit its time limit, or was preempted by SLURM, which requeues it itself when
    configured to; outside SLURM (torchrun, a container platform) it is the usual request to stop."""

    def __init__(self, checkpoint: AtomicModelCheckpoint, max_requeues: int, config: Path) -> None:
        self.checkpoint = checkpoint
        self.config = config
        self.max_requeues = max_requeues
        self.received = 0  # the strongest request so far: an index into REQUESTS
        self._sigterm_before: Any = None
        self._steps_to_check = 1  # the first step checks; later checks are spaced by rank 0's proposal
        self._interval = 1
        self._checked_at: float | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag (DESIGN.md rule 4): no I/O, no collective, no checkpoint inside a signal handler.
        self.received = max(self.received, REQUESTS.index(signum))

    def listen(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in REQUESTS[1:]:
                signal.signal(signum, self._on_signal)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._sigterm_before = signal.getsignal(signal.SIGTERM)
            self.listen()

    # Lightning installs its own SIGTERM handler just before the sanity check: take the signal back.
    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.listen()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.listen()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # After fit, SIGTERM ends the process again; a late SIGUSR1 stays a flag, so test and eval finish.
        if (
            stage == "fit"
            and self._sigterm_before is not None
            and threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGTERM, self._sigterm_before)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        request = self._agree(trainer)
        if request == 0:
            return
        for logger in trainer.loggers:  # the rows logged so far reach the disk before SLURM may kill the ranks
            logger.save()
        path = self.checkpoint.save_last_now(trainer)
        message = None
        if trainer.is_global_zero:
            name = signal.Signals(REQUESTS[request]).name
            saved = f"{name} at step {trainer.global_step}: checkpoint saved to {path}"
            usr1 = REQUESTS[request] == signal.SIGUSR1
            message = requeue.after_checkpoint(saved, str(self.config), self.max_requeues, requeue_job=usr1)
        trainer.strategy.barrier()  # the requeue is asked for before any rank exits (srun --kill-on-bad-exit)
        raise requeue.Preempted(message)

    def _agree(self, trainer: pl.Trainer) -> int:
        """The strongest request any rank has received, the same on every rank, at the steps where they check.

        At a check every rank all-reduces (max) [its flag, rank 0's proposal for the steps until the next
        check], so all ranks stop at the same step. Rank 0 proposes about one check per CHECK_EVERY_S: on a
        small model a collective per step would cost as much as the step itself, and a preemption notice
        gives minutes."""
        if not (trainer.world_size > 1 and dist.is_available() and dist.is_initialized()):
            return self.received
        self._steps_to_check -= 1
        if self._steps_to_check > 0:
            return 0
        now = time.monotonic()
        proposal = 0
        if trainer.is_global_zero and self._checked_at is not None:
            step_s = max((now - self._checked_at) / self._interval, 1e-6)
            proposal = min(max(int(CHECK_EVERY_S / step_s), 1), MAX_STEPS_BETWEEN_CHECKS)
        message = torch.tensor([self.received, proposal], device=trainer.strategy.root_device)
        dist.all_reduce(message, op=dist.ReduceOp.MAX)
        request, steps = message.tolist()
        self._checked_at, self._interval = now, max(int(steps), 1)
        self._steps_to_check = self._interval
        return int(request)


CHECK_EVERY_S = 0.5
MAX_STEPS_BETWEEN_CHECKS = 1000


class TrainingLog:
    """Keeps logs/metrics.csv whole across a resume: Lightning's CSVLogger deletes the file when it starts in a
    folder that has one, which would drop every row logged before the preemption.

    Rank zero reads the rows before fit and, once fit ends (finished or preempted again), puts back those logged
    before the first step the resumed fit logged, ahead of the new rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.earlier = self._rows() if path.is_file() else []

    def restore(self) -> None:
        if not self.earlier:
            return
        later = self._rows() if self.path.is_file() else []
        first_new = min((_step(row) for row in later), default=float("inf"))
        rows = [row for row in self.earlier if _step(row) < first_new] + later
        columns = sorted({key for row in rows for key in row})  # Lightning's own column order: sorted
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, buffer.getvalue())

    def _rows(self) -> list[dict[str, str]]:
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return float("nan")
