"""Step overhead: one workload trained by a plain PyTorch loop, stock Lightning and dsf-dist, side by side.

    python benchmarks/step_overhead.py [--repeats 5] [--models small compute] [--ranks 1 2] [--no-append]

Each measurement is a fresh process (two for 2 ranks: torchrun for the raw loop, Lightning's and dsf-dist's own
launchers for the others) with one CPU thread per process, training the same MLP on the same synthetic data
with Adam (benchmarks/workload.py). The figure is the mean time per optimizer step over the steps after a
warm-up, inside one epoch; the three variants alternate, and the table gives the median over the repeats.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
from pathlib import Path

from common import REPO, append, dsf, load, machine, median_range, run

STEPS = {"small": (2000, 200), "compute": (200, 20)}  # (steps, warm-up steps not timed)
WORKLOAD = str(REPO / "benchmarks" / "workload.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(variant: str, model: str, ranks: int, steps: int, out: Path) -> list[str]:
    script = [WORKLOAD, variant, "--model", model, "--steps", str(steps), "--ranks", str(ranks)]
    if variant == "raw" and ranks > 1:
        launcher = ["-m", "torch.distributed.run", f"--nproc-per-node={ranks}", "--master-addr=127.0.0.1"]
        return [sys.executable, *launcher, f"--master-port={free_port()}", *script]
    if variant in ("raw", "lightning"):
        return [sys.executable, *script]
    overrides = [
        "data.datamodule=workload:SyntheticData",
        f"data.datamodule_kwargs={{model: {model}}}",
        f"model.network_kwargs={{hidden_sizes: {json.dumps(workload_spec(model)['hidden'])}}}",
        "existing_model.kind=none",
        "callbacks=[{target: 'workload:StepClock'}]",
        f"trainer.max_steps={steps}",
        f"trainer.devices={ranks}",
        f"strategy.name={'ddp' if ranks > 1 else 'auto'}",
    ]
    return dsf("train", "--output", str(out), *[arg for item in overrides for arg in ("--set", item)])


def workload_spec(model: str) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from workload import MODELS

    return MODELS[model]


def step_ms(variant: str, model: str, ranks: int, scratch: Path) -> float:
    steps, warmup = STEPS[model]
    clock = scratch / f"{variant}-{model}-{ranks}"
    run(command(variant, model, ranks, steps, scratch / "runs"), cwd=scratch, DSF_BENCH_CLOCK=str(clock))
    times = json.loads(Path(f"{clock}.0.json").read_text())["times"]
    assert len(times) == steps, f"{variant}: {len(times)} steps timed, expected {steps}"
    return 1000 * (times[-1] - times[warmup]) / (steps - 1 - warmup)


def measure(model: str, ranks: int, repeats: int, scratch: Path) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"raw": [], "lightning": [], "dsf": []}
    for _ in range(repeats):
        for variant in figures:  # alternating, so drift in the machine's speed falls on all three
            figures[variant].append(step_ms(variant, model, ranks, scratch))
    return figures


def row(model: str, ranks: int, figures: dict[str, list[float]]) -> str:
    raw, stock, ours = (statistics.median(figures[v]) for v in ("raw", "lightning", "dsf"))
    cells = [median_range(figures[v]) for v in ("raw", "lightning", "dsf")]
    return (
        f"| {model} | {ranks} | {' | '.join(cells)} | {ours - raw:+.3f} | {stock - raw:+.3f} | "
        f"{ours / raw:.3f} | {ours / stock:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", choices=sorted(STEPS), default=["small", "compute"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    header = (
        "| model | ranks | raw ms/step | Lightning ms/step | dsf ms/step | dsf − raw ms | Lightning − raw ms "
        "| dsf / raw | dsf / Lightning |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows, loads = [], [load()]
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            for ranks in args.ranks:
                rows.append(row(model, ranks, measure(model, ranks, args.repeats, Path(scratch))))
                loads.append(load())
                print(rows[-1], flush=True)
    body = (
        f"Machine: {machine()}; 1-minute load average during the run {min(loads)}–{max(loads)}. "
        f"Command: `python benchmarks/step_overhead.py --repeats {args.repeats}`. Median (range) over "
        f"{args.repeats} alternating repeats of the mean ms per optimizer step after a warm-up "
        f"(small: steps 200–2000 of batch 64, MLP 64-128-64-10; compute: steps 20–200 of batch 128, MLP "
        "256-1024-1024-10), one CPU thread per process.\n\n" + header + "\n" + "\n".join(rows) + "\n"
    )
    print(body)
    if not args.no_append:
        append("Step overhead: plain PyTorch, stock Lightning and dsf-dist", body)


if __name__ == "__main__":
    main()
