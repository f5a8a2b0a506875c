"""Start-up: `dsf --help`, `dsf config`, and the time from `dsf train` to its first optimizer step, against a
plain PyTorch script that does the same up to its first step (benchmarks/plain_digits.py).

    python benchmarks/startup.py [--repeats 5] [--no-append]

Each figure is a fresh process, timed from just before it is started. The first step's time comes from the
run's results/throughput.json (the throughput monitor, on by default) and from the plain script's output.
The commands alternate, so drift in the machine's speed falls on all of them; the table gives median (range).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, append, dsf, load, machine, median_range, run


def seconds(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    run(command, cwd=cwd)
    return time.perf_counter() - started


def dsf_first_step(scratch: Path) -> float:
    out = scratch / "runs"
    # One step: everything `dsf run` does before training (config, run folder, Trainer, sanity check) happens.
    command = dsf("train", "--output", str(out), "--set", "trainer.max_steps=1", "--set", "run.name=startup")
    started = time.time()
    run(command, cwd=scratch)
    summary = json.loads((out / "startup" / "results" / "throughput.json").read_text())
    shutil.rmtree(out / "startup")  # the next repeat starts a fresh run
    return summary["first_step_unix_time"] - started


def plain_first_step(scratch: Path) -> float:
    started = time.time()
    done = run([sys.executable, str(REPO / "benchmarks" / "plain_digits.py")], cwd=scratch)
    return json.loads(done.stdout)["first_step_unix_time"] - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"help": [], "config": [], "plain": [], "dsf": []}
    loads = [load()]
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        for _ in range(args.repeats):
            figures["help"].append(seconds(dsf("--help"), cwd))
            figures["config"].append(seconds(dsf("config"), cwd))
            figures["plain"].append(plain_first_step(cwd))
            figures["dsf"].append(dsf_first_step(cwd))
            loads.append(load())
    gap = statistics.median(figures["dsf"]) - statistics.median(figures["plain"])
    rows = [
        f"| `dsf --help` | {median_range(figures['help'], 2)} s | under 0.3 s | "
        f"{'met' if statistics.median(figures['help']) < 0.3 else 'missed'} |",
        f"| `dsf config` | {median_range(figures['config'], 2)} s | — | — |",
        f"| plain PyTorch script to its first step | {median_range(figures['plain'], 2)} s | — | — |",
        f"| `dsf train` to its first step | {median_range(figures['dsf'], 2)} s | within 1.5 s of the plain "
        f"script | {'met' if gap <= 1.5 else 'missed'}: {gap:+.2f} s |",
    ]
    body = (
        f"Machine: {machine()}; 1-minute load average during the run {min(loads)}–{max(loads)}. Command: "
        f"`python benchmarks/startup.py --repeats {args.repeats}`. Median (range) of {args.repeats} alternating "
        "repeats, each a fresh process timed from just before it starts.\n\n"
        "| what | seconds | target | |\n|---|---:|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(body)
    if not args.no_append:
        append("Start-up: dsf-dist against a plain PyTorch script", body)


if __name__ == "__main__":
    main()
