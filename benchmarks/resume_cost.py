"""What a resume costs: seconds from process start to the first training step, for a fresh 2-rank run and for the
same run resumed mid-epoch from its last.ckpt, per strategy (ddp, fsdp, deepspeed ZeRO-3, 2 CPU ranks).

    python benchmarks/resume_cost.py [--repeats 2] [--no-append]

Each repeat trains 4 steps from scratch (stopping mid-epoch: the digits epoch has 10 steps at 2 ranks) and then
resumes the run to step 8. The figure is rank zero's `first_step_after_process_start_s` in results/throughput.json
(dsf_dist/hooks/throughput.py): imports, process group, strategy set-up, for the resume also finding, vetting and
loading the checkpoint, up to the first step. Appends its table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import append, dsf, load, machine, median_range, run

STRATEGIES = {
    "ddp": ["strategy.name=ddp"],
    "fsdp": ["strategy.name=fsdp", "strategy.fsdp.wrap_modules=[Linear]"],
    "deepspeed (ZeRO-3)": ["strategy.name=deepspeed", "strategy.deepspeed.stage=3"],
}
COMMON = [
    "trainer.devices=2",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
    "throughput.flops_per_sample=1000",  # given: no FLOP count on the first step
    "throughput.window_steps=2",
]


def first_step(folder: Path) -> float:
    return json.loads((folder / "results" / "throughput.json").read_text())["first_step_after_process_start_s"]


def measure(overrides: list[str], name: str, scratch: Path) -> tuple[float, float]:
    sets = [*COMMON, *overrides, "trainer.max_steps=4", f"run.name={name}", "run.output_root=runs"]
    run(dsf("train", *[arg for item in sets for arg in ("--set", item)]), cwd=scratch)
    folder = scratch / "runs" / name
    fresh = first_step(folder)
    run(dsf("train", "-c", str(folder / "config.yaml"), "--resume", "--set", "trainer.max_steps=8"), cwd=scratch)
    return fresh, first_step(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    loads, rows = [load()], []
    with tempfile.TemporaryDirectory(prefix="dsf-resume-") as scratch:
        for label, overrides in STRATEGIES.items():
            pairs = [measure(overrides, f"{label.split()[0]}-{i}", Path(scratch)) for i in range(args.repeats)]
            loads.append(load())
            fresh, resumed = [p[0] for p in pairs], [p[1] for p in pairs]
            extra = median_range([r - f for f, r in pairs], 2)
            rows.append(f"| {label} | {median_range(fresh, 2)} | {median_range(resumed, 2)} | {extra} |")
    body = (
        f"Machine: {machine()}; 1-minute load average during the run {min(loads)}–{max(loads)}. Command: "
        f"`python benchmarks/resume_cost.py --repeats {args.repeats}`. Digits MLP, 2 CPU ranks; seconds from process "
        "start to the first training step (rank 0), median (range) of the repeats.\n\n"
        "| strategy | fresh start | resumed mid-epoch | resume − fresh |\n|---|---:|---:|---:|\n" + "\n".join(rows)
    )
    print(body)
    if not args.no_append:
        append("Resume cost: process start to the first resumed step", body)


if __name__ == "__main__":
    main()
