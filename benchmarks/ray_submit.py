"""Time from `ray job submit` to results, with Ray Train's default settings and with dsf-dist's, on one config.

    python benchmarks/ray_submit.py [--repeats 3] [--epochs 3]

Brings up the Ray head the tests use (tests/ray_head.py: `ray start --head --block` on 127.0.0.1, 2 CPUs), then
submits `python -m dsf_dist.launchers.ray -c configs/ray.yaml` (2 workers, DDP on CPU) with `ray job submit
--no-wait --working-dir <repo>`, alternating the two settings:

- Ray's defaults: --set ray.health_check_interval_s=2 --set ray.preemption_watcher=true --set ray.print_patch=true
  (the values Ray Train uses when the variables are unset);
- dsf-dist's defaults: the config as it is (0.5 s, off, off).

Each job is followed by polling the job's status and log every 0.2 s; the table gives the median and range of the
seconds from the submit command to each milestone. Prints Markdown.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from ray_head import RayHead  # noqa: E402

SETTINGS = {
    "Ray's defaults": ["ray.health_check_interval_s=2", "ray.preemption_watcher=true", "ray.print_patch=true"],
    "dsf-dist's defaults": [],
}
JOBS = itertools.count(1)
MILESTONES = {  # first log line that shows each step, in order
    "job RUNNING (entry point started)": None,
    "Train worker group started": "Started training worker group",
    "first checkpoint reported": "Reporting training result 1",
    "results written, job SUCCEEDED": None,
}


def follow(head: RayHead, job: str, since: float, timeout: float = 600) -> dict[str, float]:
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with urllib.request.urlopen(f"{head.address}/api/jobs/{job}", timeout=10) as response:
            status = json.load(response)["status"]
        now = time.perf_counter() - since
        if status in ("RUNNING", "SUCCEEDED") and "job RUNNING (entry point started)" not in seen:
            seen["job RUNNING (entry point started)"] = now
        logs = head.job_logs(job)
        for name, marker in MILESTONES.items():
            if marker and name not in seen and marker in logs:
                seen[name] = now
        if status == "SUCCEEDED":
            seen["results written, job SUCCEEDED"] = now
            return seen
        if status in ("FAILED", "STOPPED"):
            raise RuntimeError(f"job {job} {status}:\n{logs[-3000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"job {job} did not finish within {timeout} s")


def run_once(head: RayHead, storage: Path, name: str, overrides: list[str], epochs: int) -> dict[str, float]:
    job = f"bench-{next(JOBS)}"
    sets = [item for override in [*overrides, f"trainer.max_epochs={epochs}"] for item in ("--set", override)]
    since = time.perf_counter()
    submitted = head.job(
        "submit", "--no-wait", "--working-dir", str(REPO), "--submission-id", job, "--",
        "python", "-m", "dsf_dist.launchers.ray", "-c", "configs/ray.yaml",
        "--set", f"ray.storage_path={storage}", *sets, timeout=120,
    )  # fmt: skip
    if submitted.returncode != 0:
        raise RuntimeError(submitted.stderr[-2000:])
    seen = follow(head, job, since)
    train = json.loads((storage / f"digits-{job}" / "results" / "train.json").read_text())
    seen["(Lightning's fit, fit_seconds)"] = train["fit_seconds"]
    seen["load average (1 min) at the end"] = os.getloadavg()[0]
    print(f"  {name}: {seen['results written, job SUCCEEDED']:.1f} s", file=sys.stderr)
    return seen


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeats", type=int, default=3)
    options.add_argument("--epochs", type=int, default=3)
    args = options.parse_args()
    import ray
    import torch

    started = time.perf_counter()
    head = RayHead().start()
    head_up = time.perf_counter() - started
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    try:
        with tempfile.TemporaryDirectory(prefix="dsf-ray-bench-") as folder:
            for _ in range(args.repeats):
                for name, overrides in SETTINGS.items():  # alternating, so that load drifts hit both alike
                    runs[name].append(run_once(head, Path(folder), name, overrides, args.epochs))
    finally:
        stopping = time.perf_counter()
        head.stop()
        head_down = time.perf_counter() - stopping
    rows = [*MILESTONES, "(Lightning's fit, fit_seconds)"]
    print(
        f"Machine: {platform.node()}: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}. "
        f"Head up in {head_up:.1f} s, stopped in {head_down:.1f} s. "
        f"{args.repeats} jobs per setting, alternating; {args.epochs} epochs each.\n"
    )
    print("| from `ray job submit` to | " + " | ".join(SETTINGS) + " |")
    print("|---|" + "---|" * len(SETTINGS))
    for row in rows:
        print(f"| {row} | " + " | ".join(cell([run[row] for run in runs[name]]) for name in SETTINGS) + " |")
    loads = {name: [f"{run['load average (1 min) at the end']:.1f}" for run in runs[name]] for name in SETTINGS}
    print(
        "\nLoad average (1 min) at the end of each job: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in loads.items())
    )


if __name__ == "__main__":
    main()
