"""The throughput monitor: samples/s (and tokens/s), TFLOP/s, MFU and peak memory, per window of steps.

Between window ends a step costs a counter increment and, for token batches, one asynchronous tensor sum: the
clock is read (and a GPU synchronised, so the reading is true) only when a window closes. FLOPs per sample
are given or measured once, on the first step, with torch's FLOP counter; the device's peak comes from the
config or Lightning's table of common GPUs (none for CPUs, so no MFU there unless configured).
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.throughput import get_available_flops
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.flop_counter import FlopCounterMode

from dsf_dist import files
from dsf_dist.config.schema import ThroughputConfig

PRECISION_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16, "64": torch.float64}


def batch_size(batch: Any) -> int:
    """Samples in a batch: the leading dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, list | tuple) else ()
    for value in values:
        size = batch_size(value)
        if size:
            return size
    return 0


def token_count(batch: Any) -> torch.Tensor | int | None:
    """Real tokens in a dict batch: the attention mask's sum (a device tensor, read at the window's end) or
    every input id; None for batches that carry no tokens."""
    if not isinstance(batch, dict):
        return None
    if isinstance(batch.get("attention_mask"), torch.Tensor):
        return batch["attention_mask"].sum()
    if isinstance(batch.get("input_ids"), torch.Tensor):
        return batch["input_ids"].numel()
    return None


def peak_flops(trainer: pl.Trainer, cfg: ThroughputConfig) -> float | None:
    """Peak FLOP/s of one device at the training precision, or None when unknown."""
    if cfg.peak_tflops:
        return cfg.peak_tflops * 1e12
    device = trainer.strategy.root_device
    if device.type != "cuda":
        return None
    precision = str(trainer.precision)
    dtype = next((dt for key, dt in PRECISION_DTYPES.items() if precision.startswith(key)), torch.float32)
    return get_available_flops(device, dtype)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class ThroughputMonitor(pl.Callback):
    def __init__(self, cfg: ThroughputConfig, summary: Path) -> None:
        self.cfg, self.summary = cfg, summary
        self.flops_per_sample = cfg.flops_per_sample
        self.counter: FlopCounterMode | None = None
        self.windows: list[dict[str, float]] = []
        self.first_step_s: float | None = None
        self._reset_window(None)

    def _reset_window(self, started: float | None) -> None:
        self.started, self.steps, self.samples, self.tokens = started, 0, 0, None

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.peak = peak_flops(trainer, self.cfg)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *_: Any) -> None:
        if self.flops_per_sample is None and self.first_step_s is None and self.counter is None:
            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, _: Any, batch: Any, *__: Any):
        if self.first_step_s is None:
            self._first_step(trainer, batch)
            return
        self.steps += 1
        self.samples += batch_size(batch)
        tokens = token_count(batch)
        if tokens is not None:
            self.tokens = tokens if self.tokens is None else self.tokens + tokens
        if self.steps == self.cfg.window_steps:
            self._close_window(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.counter is not None:  # training ended inside the first step
            self.counter.__exit__(None, None, None)
            self.counter = None
        if trainer.is_global_zero and self.first_step_s is not None:
            files.write_json(self.summary, self._summarise(trainer))

    # -- measurement ----------------------------------------------------------------------------
    def _first_step(self, trainer: pl.Trainer, batch: Any) -> None:
        if self.counter is not None:
            self.counter.__exit__(None, None, None)
            flops = self.counter.get_total_flops()
            self.counter = None
            size = batch_size(batch)
            self.flops_per_sample = flops / size if flops and size else None
        self.first_step_at = time.time()
        self.first_step_s = self.first_step_at - psutil.Process().create_time()
        self._reset_window(self._now(trainer))

    def _now(self, trainer: pl.Trainer) -> float:
        device = trainer.strategy.root_device
        if device.type == "cuda":  # the only synchronisation: once per window
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def _close_window(self, trainer: pl.Trainer) -> None:
        now = self._now(trainer)
        seconds, world = now - self.started, trainer.world_size
        window = {
            "step_ms": 1000 * seconds / self.steps,
            "samples_per_s": world * self.samples / seconds,
            "peak_memory_mib": peak_memory_mib(trainer.strategy.root_device),
        }
        if self.tokens is not None:
            window["tokens_per_s"] = world * float(self.tokens) / seconds
        if self.flops_per_sample:
            window["tflops_per_device"] = self.flops_per_sample * self.samples / seconds / 1e12
            if self.peak:
                window["mfu"] = window["tflops_per_device"] * 1e12 / self.peak
        self.windows.append(window)
        if trainer.is_global_zero:
            # with the epoch and the step index, as Lightning's own rows have them (global_step already counts this
            # step; Lightning logs a step's rows at its 0-based index, so the window's row stays in step order)
            metrics = {"epoch": trainer.current_epoch, **{f"throughput/{key}": value for key, value in window.items()}}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step - 1)
        self._reset_window(now)

    def _summarise(self, trainer: pl.Trainer) -> dict[str, Any]:
        """Medians over the windows (robust to a window that held a validation or a checkpoint)."""
        keys = self.windows[0].keys() if self.windows else ()
        medians = {key: statistics.median(w[key] for w in self.windows) for key in keys if key != "peak_memory_mib"}
        if not self.windows:
            # A note, not a warning: a warning would print this file's path and line to the user.
            rank_zero_info(
                f"throughput: fewer than {self.cfg.window_steps + 1} steps, so no window to report "
                f"(throughput.window_steps is {self.cfg.window_steps})"
            )
        return {
            "world_size": trainer.world_size,
            "windows": len(self.windows),
            "window_steps": self.cfg.window_steps,
            **medians,
            "peak_memory_mib": max((w["peak_memory_mib"] for w in self.windows), default=None),
            "flops_per_sample": self.flops_per_sample,
            "peak_tflops_per_device": self.peak / 1e12 if self.peak else None,
            "first_step_after_process_start_s": round(self.first_step_s, 3),
            "first_step_unix_time": self.first_step_at,
        }
