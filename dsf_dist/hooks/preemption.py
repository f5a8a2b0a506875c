"""Preemption that loses nothing (DESIGN.md rule 4).

- SIGUSR1 (SLURM's warning before the time limit, or `scancel --signal=USR1`) and SIGTERM only set a flag.
- About twice a second, at a step they all agree on, the ranks combine their flags (an all-reduce); when any
  rank was signalled, every rank saves `last.ckpt` together (atomically: hooks/checkpoint.py), rank zero
  requeues the SLURM job (launchers/slurm.py), and training stops on every rank with `Preempted`. The restarted
  job resumes from that checkpoint (run.resume=auto).
- A stop agreed at an epoch's last step waits for that epoch's end and comes after the next step: Lightning resumes
  a checkpoint saved after an epoch's last step as if the epoch had ended, so its validation, the epoch-end
  hooks (best-k checkpoints, early stopping, a user's on_train_epoch_end) and the epoch's logged rows would never
  run. A stop agreed at the very last step of training comes once fit ends.

Lightning's own handlers are replaced, not stacked on: its SLURM auto-requeue checkpoints inside the signal
handler (dsf passes SLURMEnvironment(auto_requeue=False)), and its SIGTERM handler runs a collective inside
the handler. The flag handlers stay installed after fit, so a signal during test or eval lets the run finish.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback

from dsf_dist.errors import Preempted
from dsf_dist.hooks.checkpoint import AtomicModelCheckpoint
from dsf_dist.launchers.environment import process_group
from dsf_dist.launchers.slurm import after_checkpoint

# Stop requests, weakest first; all ranks take the strongest any rank received (SIGTERM: stop, do not requeue).
REQUESTS = (None, signal.SIGUSR1, signal.SIGTERM)


class Preemption(Callback):
    """Stop at the first step boundary after SIGUSR1 or SIGTERM reached any rank, with last.ckpt saved.

    SIGUSR1 (SLURM's notice before the time limit) also requeues the job. SIGTERM does not: under SLURM it
    means the job was cancelled, hit its time limit, or was preempted by SLURM, which requeues it itself when
    configured to; outside SLURM (torchrun, a container platform) it is the usual request to stop."""

    def __init__(
        self, checkpoint: AtomicModelCheckpoint, max_requeues: int, config: Path, check_every_s: float = 0.5
    ) -> None:
        self.checkpoint = checkpoint
        self.config = config
        self.max_requeues = max_requeues
        self.check_every_s = check_every_s  # run.stop_check_s
        self.received = 0  # the strongest request so far: an index into REQUESTS
        self.deferred = 0  # a request all ranks agreed on at an epoch's last step, for the next step (or fit's end)
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
        request = max(self._agree(trainer), self.deferred)
        if request == 0:
            return
        # The same on every rank: they agreed on the request, and every rank has as many batches per epoch.
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self.deferred = request
            return
        # This step's row, which Lightning logs only after on_train_batch_end (never, once Preempted is raised
        # here): the same call, with the same step, as in a run that goes on. The resumed run starts at the next
        # step, so without it a stop on a logging step (log_every_n_steps) would drop that row.
        trainer._logger_connector.update_train_step_metrics()
        self._stop(trainer, request)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.deferred:  # agreed at the last step of the last epoch: fit has ended, test and eval do not start
            self._stop(trainer, self.deferred)

    def _stop(self, trainer: pl.Trainer, request: int) -> None:
        for logger in trainer.loggers:  # the rows logged so far reach the disk before SLURM may kill the ranks
            logger.save()
        path = self.checkpoint.save_last_now(trainer)  # in place on every rank's return, also with async_save
        message = None
        if trainer.is_global_zero:
            name = signal.Signals(REQUESTS[request]).name
            saved = f"{name} at step {trainer.global_step}: checkpoint saved to {path}"
            usr1 = REQUESTS[request] == signal.SIGUSR1
            message = after_checkpoint(saved, str(self.config), self.max_requeues, requeue_job=usr1)
        trainer.strategy.barrier()  # the requeue is asked for before any rank exits (srun --kill-on-bad-exit)
        raise Preempted(message)

    def _agree(self, trainer: pl.Trainer) -> int:
        """The strongest request any rank has received, the same on every rank, at the steps where they check.

        At a check every rank all-reduces (max) [its flag, rank 0's proposal for the steps until the next
        check], so all ranks stop at the same step. Rank 0 proposes about one check per run.stop_check_s: on a
        small model a collective per step would cost as much as the step itself, and a preemption notice
        gives minutes. With run.stop_check_s 0 they check at every step."""
        if not (trainer.world_size > 1 and process_group()):
            return self.received
        self._steps_to_check -= 1
        if self._steps_to_check > 0:
            return 0
        now = time.monotonic()
        proposal = 0
        if trainer.is_global_zero and self._checked_at is not None:
            step_s = max((now - self._checked_at) / self._interval, 1e-6)
            proposal = min(max(int(self.check_every_s / step_s), 1), MAX_STEPS_BETWEEN_CHECKS)
        message = torch.tensor([self.received, proposal], device=trainer.strategy.root_device)
        dist.all_reduce(message, op=dist.ReduceOp.MAX)
        request, steps = message.tolist()
        self._checked_at, self._interval = now, max(int(steps), 1)
        self._steps_to_check = self._interval
        return int(request)


MAX_STEPS_BETWEEN_CHECKS = 1000
