"""Per-rank memory of training state under each strategy at 2 CPU ranks, measured from the real local
shards (dsf_dist/hooks/memory.py), side by side in one run.

    python benchmarks/sharding_memory.py [--hidden 1024 1024] [--no-append]

Prints a table and appends it, with the machine described, to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import append, machine

STRATEGIES = {
    "ddp": ["strategy.name=ddp"],
    "fsdp (full)": ["strategy.name=fsdp", "strategy.fsdp.sharding=full"],
    "zero-1": ["strategy.name=deepspeed", "strategy.deepspeed.stage=1"],
    "zero-2": ["strategy.name=deepspeed", "strategy.deepspeed.stage=2"],
    "zero-3": ["strategy.name=deepspeed", "strategy.deepspeed.stage=3"],
}
PARTS = ("parameters", "gradients", "optimizer_state")


def measure(name: str, overrides: list[str], hidden: list[int] | None, workdir: Path) -> dict:
    """One 2-rank `dsf train` for 3 steps with run.memory_report on; returns rank zero's figures. `hidden`: the MLP's
    hidden sizes (None: the default model's)."""
    run = name.split()[0]
    sets = [
        *overrides,
        *([f"model.network_kwargs.hidden_sizes={hidden}"] if hidden else []),
        "trainer.devices=2",
        "trainer.max_steps=3",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "run.memory_report=true",
        f"run.name={run}",
        "run.output_root=runs",
    ]
    command = [sys.executable, "-m", "dsf_dist", "train", *[arg for item in sets for arg in ("--set", item)]]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: dsf train failed\n{done.stderr[-2000:]}")
    return rank_zero(workdir / "runs" / run)


def rank_zero(run: Path) -> dict:
    """Rank zero's figures from a run's results/memory.json (run.memory_report), with their total."""
    ranks = json.loads((run / "results" / "memory.json").read_text())["ranks"]
    assert len(ranks) == 2 and all("error" not in r for r in ranks), ranks
    return ranks[0] | {"total": sum(ranks[0][part] for part in PARTS)}


def measure_all(hidden: list[int], workdir: Path) -> dict[str, dict]:
    return {name: measure(name, overrides, hidden, workdir) for name, overrides in STRATEGIES.items()}


TARGET = 0.55  # issue 7: FSDP full sharding and ZeRO-3 at most 0.55x DDP's training state at 2 ranks


def target(name: str, ratio: float) -> str:
    if name not in ("fsdp (full)", "zero-3"):
        return "—"
    return f"≤ {TARGET}: {'met' if ratio <= TARGET else 'missed'}"


def table(figures: dict[str, dict]) -> str:
    ddp = figures["ddp"]
    lines = [
        "| strategy | parameters | gradients | optimizer state | total | total / DDP | optimizer / DDP "
        "| ZeRO fp32 master copy | peak RSS | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {f['parameters']:,} | {f['gradients']:,} | {f['optimizer_state']:,} | {f['total']:,} "
            f"| {f['total'] / ddp['total']:.3f} | {f['optimizer_state'] / ddp['optimizer_state']:.3f} "
            f"| {f['master_weights']:,} | {f['peak_rss'] / 2**20:.0f} MiB | {target(name, f['total'] / ddp['total'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024], help="MLP hidden sizes")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure_all(args.hidden, Path(scratch))
    body = table(figures)
    print(body)
    if not args.no_append:
        body = (
            f"Machine: {machine()}. Model: digits MLP 64-{'-'.join(map(str, args.hidden))}-10, Adam, fp32. "
            "Bytes on rank 0 at the second optimizer step (rank 1 matches), from the tensors the rank holds. "
            "Command: `python benchmarks/sharding_memory.py`.\n\n"
            f"{body}\n"
        )
        append("Sharding: per-rank bytes of training state at 2 CPU ranks", body)


if __name__ == "__main__":
    main()
