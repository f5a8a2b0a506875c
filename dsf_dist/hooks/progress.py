"""Lighter versions of two Lightning defaults that run at every step of every rank.

Lightning's progress bar redraws itself, and rebuilds the metrics dictionary it shows, after every batch;
its default profiler wraps every hook of every callback in a generator-based context manager. On a small
model each costs a sizeable share of a step (benchmarks/RESULTS.md, step overhead)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.profilers import PassThroughProfiler


class ProgressBar(RichProgressBar):
    """Rich's bar, redrawn at most `per_second` times a second, and always at an epoch's last batch."""

    def __init__(self, per_second: float = 10) -> None:
        super().__init__(leave=True)
        self.interval = 1 / per_second
        self._drawn = 0.0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        if now - self._drawn >= self.interval or batch_idx + 1 == self.total_train_batches:
            self._drawn = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class NoProfiler(PassThroughProfiler):
    """Lightning's default (no profiling) with one shared context manager instead of a generator per hook."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:  # type: ignore[override]
        return self._nothing
