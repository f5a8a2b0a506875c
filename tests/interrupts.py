"""Callbacks for the resume tests (tests/test_resume.py), named in a run's config as `interrupts:StopAt` and
`interrupts:SeenSamples` (conftest puts tests/ on the ranks' import path). Neither draws a random number nor adds
to the state dict, so a run with them trains exactly as one without.

- StopAt(step, signal, rank): right after training step `step`, the named rank sends a real signal. SIGKILL goes to
  the whole process group (every rank dies at once, as when a node is lost); SIGTERM and SIGUSR1 go to that rank
  only, and the ranks agree to stop at their next check (run.stop_check_s=0: the next step).
- RaiseAt(step, rank, mark): right after training step `step`, the named rank raises InjectedFault (a DsfError,
  as a full disk or a bad file found on one rank would be), after writing the wall-clock time to `mark`; the other
  ranks carry on into their next collective.
- Pace(step_s, log): every rank sleeps `step_s` after each step (a model slow enough to be killed mid-run); rank 0
  appends the wall-clock time, the step and its process id to `log`.
- SeenSamples(folder): each rank appends, before each training step, the step number and a digest of every sample
  in its batch to `<folder>/seen-rank<R>.jsonl`, so a test can count which samples an epoch saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal as signals
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from dsf_dist.errors import DsfError


class StopAt(pl.Callback):
    def __init__(self, step: int, signal: str = "SIGTERM", rank: int = 0) -> None:
        self.step, self.signal, self.rank = step, signals.Signals[signal], rank
        self.sent = False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.sent or trainer.global_step != self.step or trainer.global_rank != self.rank:
            return
        self.sent = True
        print(f"interrupts: {self.signal.name} after step {self.step} on rank {self.rank}", flush=True)
        if self.signal == signals.SIGKILL:
            if test_runner_in_group():
                raise RuntimeError("StopAt: SIGKILL would reach the test runner; start the job in its own session")
            os.killpg(os.getpgrp(), signals.SIGKILL)
        os.kill(os.getpid(), self.signal)


def test_runner_in_group() -> bool:
    """An ancestor in this process group is pytest (the job was not started in its own session)."""
    pid, group = os.getppid(), os.getpgrp()
    while pid > 1 and os.getpgid(pid) == group:
        if b"pytest" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return True
        pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    return False


class InjectedFault(DsfError):
    """Raised by RaiseAt on one rank."""


class RaiseAt(pl.Callback):
    def __init__(self, step: int, rank: int = 1, mark: str | None = None) -> None:
        self.step, self.rank, self.mark = step, rank, mark

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            if self.mark:
                Path(self.mark).write_text(str(time.time()))
            print(f"interrupts: raising on rank {self.rank} after step {self.step}", flush=True)
            raise InjectedFault(f"injected after step {self.step}")  # the rank is for dsf to name


class Pace(pl.Callback):
    def __init__(self, step_s: float, log: str) -> None:
        # Not `self.log`: Lightning sets every callback's `log` to the module's log method when fit starts.
        self.step_s, self.steps_file = step_s, Path(log)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        time.sleep(self.step_s)
        if trainer.global_rank == 0:
            with open(self.steps_file, "a") as out:
                out.write(f"{time.time()} {trainer.global_step} {os.getpid()}\n")


def paced(log: Path) -> str:
    """The `callbacks=` override that paces a run with Pace, its rank zero logging each step to `log`."""
    return f'callbacks=[{{target: "interrupts:Pace", kwargs: {{step_s: 0.3, log: "{log}"}}}}]'


def paced_steps(log: Path) -> list[tuple[float, int, int]]:
    """What Pace logged: (time, global step, pid) per step of rank zero, oldest first; [] before the first."""
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(float(at), int(step), int(pid)) for at, step, pid in rows]


class SeenSamples(pl.Callback):
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any):
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        record = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "world_size": trainer.world_size,
            "samples": [digest(row) for row in inputs],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"seen-rank{trainer.global_rank}.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")


def digest(row: torch.Tensor) -> str:
    return hashlib.sha1(row.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def seen(folder: Path) -> list[dict]:
    """Every record of every rank, in no particular order."""
    return [json.loads(line) for path in folder.glob("seen-rank*.jsonl") for line in path.read_text().splitlines()]
