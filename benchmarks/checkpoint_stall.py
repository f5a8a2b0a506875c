"""How long a checkpoint stops training, synchronous against asynchronous (checkpoint.async_save), for a model of
at least 100 M parameters under FSDP on 2 CPU ranks; and how much slower the steps run while a background write
goes on.

    python benchmarks/checkpoint_stall.py [--hidden 4096 ...] [--steps 16] [--every 4] [--no-append]

Each mode is one `dsf train` (FSDP2 full sharding, sharded checkpoints, Adam) that saves last.ckpt every --every
steps. A callback (StepClock, below) records on rank 0 when each step starts, and the checkpoint callback's own
figures: the seconds the loop was blocked in each save and the seconds until that save was written and in place.
- blocked: the loop's time inside the save (async: copying the shards to host memory, sync: the whole write);
- step slowdown: the median interval between step starts while a background write was in flight, over the median
  interval of steps with no save and no write (the same intervals in the synchronous run give its baseline).
Target (issue 16): async blocked time ≤ 15 % of the synchronous save time. Appends its table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from common import append, dsf, load, machine, run

TARGET = 0.15


class StepClock(pl.Callback):
    """Rank 0: the wall-clock time each training step starts; at the end, those and the checkpoint timings."""

    def __init__(self, out: str) -> None:
        self.out, self.starts = Path(out), []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.starts.append(time.perf_counter())
        if trainer.is_global_zero:
            saves = trainer.checkpoint_callback.timings  # dsf_dist/hooks/checkpoint.py
            self.out.write_text(json.dumps({"starts": self.starts, "saves": saves}))


def parameters(hidden: list[int]) -> int:
    widths = [64, *hidden, 10]
    return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))


def measure(mode: str, hidden: list[int], steps: int, every: int, scratch: Path) -> dict:
    clock = scratch / f"{mode}.json"
    sets = [
        "strategy.name=fsdp",
        "strategy.fsdp.wrap_modules=[Linear]",
        "trainer.devices=2",
        f"trainer.max_steps={steps}",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "data.batch_size=8",
        "throughput.enabled=false",
        f"model.network_kwargs.hidden_sizes={hidden}",
        f"checkpoint.every_n_train_steps={every}",
        f"checkpoint.async_save={'true' if mode == 'async' else 'false'}",
        f"run.name={mode}",
        "run.output_root=runs",
        f'callbacks=[{{target: "checkpoint_stall:StepClock", kwargs: {{out: "{clock}"}}}}]',
    ]
    run(dsf("train", *[arg for item in sets for arg in ("--set", item)]), cwd=scratch, timeout=1800)
    return intervals(json.loads(clock.read_text()), every)


def intervals(clock: dict, every: int) -> dict:
    """Per step k (1-based): the time from its start to the next step's start, which includes a save at step k."""
    starts = clock["starts"]
    spans = {k: starts[k] - starts[k - 1] for k in range(1, len(starts))}
    saves = [s for s in clock["saves"] if s["step"] % every == 0]
    saving = {s["step"] for s in saves}
    # Steps whose interval overlaps a background write: after a save, until its write was complete.
    writing = set()
    for save in saves:
        done_at = save["started"] + save["write_s"]
        writing |= {k for k in spans if k > save["step"] and starts[k - 1] < done_at}
    quiet = [spans[k] for k in spans if k not in saving and k not in writing and k > 1]  # step 1 warms up
    return {
        "step_s": statistics.median(quiet),
        "blocked_s": [s["blocked_s"] for s in saves],
        "written_s": [s["write_s"] for s in saves],
        "during_write_s": [spans[k] for k in sorted(writing - saving)],
    }


def table(hidden: list[int], sync: dict, background: dict) -> str:
    blocked_sync = statistics.median(sync["blocked_s"])
    blocked_async = statistics.median(background["blocked_s"])
    ratio = blocked_async / blocked_sync
    during = statistics.median(background["during_write_s"]) if background["during_write_s"] else float("nan")
    lines = [
        f"Model: digits MLP 64-{'-'.join(map(str, hidden))}-10, {parameters(hidden) / 1e6:.1f} M parameters, Adam, "
        "fp32, FSDP2 full sharding on 2 CPU ranks (gloo), sharded checkpoints (torch.distributed.checkpoint), "
        "batch 8 per rank. Medians over the saves of one run per mode.",
        "",
        "| mode | loop blocked per save | save written and in place | step, no save | step while a write runs |",
        "|---|---:|---:|---:|---:|",
        f"| sync | {blocked_sync:.2f} s | {statistics.median(sync['written_s']):.2f} s | {sync['step_s']:.2f} s | — |",
        f"| async | {blocked_async:.2f} s | {statistics.median(background['written_s']):.2f} s "
        f"| {background['step_s']:.2f} s | {during:.2f} s ({during / background['step_s']:.2f}x) |",
        "",
        f"Async blocked time / sync save time: {ratio:.3f} (target ≤ {TARGET}: "
        f"{'met' if ratio <= TARGET else 'missed'}).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[4096] * 7)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    loads = [load()]
    with tempfile.TemporaryDirectory(prefix="dsf-stall-") as scratch:
        sync = measure("sync", args.hidden, args.steps, args.every, Path(scratch))
        loads.append(load())
        background = measure("async", args.hidden, args.steps, args.every, Path(scratch))
        loads.append(load())
    body = (
        f"Machine: {machine()}; 1-minute load average during the run {min(loads)}–{max(loads)}. Command: "
        f"`python benchmarks/checkpoint_stall.py --steps {args.steps} --every {args.every}`.\n\n"
        f"{table(args.hidden, sync, background)}"
    )
    print(body)
    print(json.dumps({"sync": sync, "async": background}))
    if not args.no_append:
        append("Checkpoint stall: synchronous against asynchronous saves", body)


if __name__ == "__main__":
    main()
