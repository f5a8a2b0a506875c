"""Time to the first optimizer step under each launcher: the same 2-rank DDP run (configs/ddp.yaml, gloo) started
by `dsf run` (Lightning's own launcher), torchrun (launchers/torchrun.sh), the loopback SLURM cluster
(`sbatch slurm/train.sh`) and the loopback Ray head (`ray job submit`).

    python benchmarks/launchers.py [--repeats 3] [--no-append]        # as root, with the SLURM packages and Ray

Each run is timed from just before its launch command to the first step's time in the run's
results/throughput.json (the throughput monitor, on by default). The cluster and the head are those the tests
use (tests/slurm_cluster.py, tests/ray_head.py), started once, stopped by PID at the end; the launchers alternate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, append, dsf, env, load, machine, median_range, run

sys.path.insert(0, str(REPO / "tests"))

from ray_head import RayHead  # noqa: E402
from slurm_cluster import LoopbackCluster, free_port  # noqa: E402

CONFIG = str(REPO / "configs" / "ddp.yaml")
QUIET = ["--set", "trainer.max_epochs=1", "--set", "trainer.enable_progress_bar=false"]
NAMES = itertools.count(1)


def wait_for(path: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path} after {timeout} s")
        time.sleep(0.2)


def first_step(results: Path, started: float) -> float:
    """From the run's throughput.json, once its pipeline has finished (so the next launch starts on a machine
    its processes have left)."""
    wait_for(results / "throughput.json")
    wait_for(results / "comparison.json")
    time.sleep(3)
    return json.loads((results / "throughput.json").read_text())["first_step_unix_time"] - started


def lightning(scratch: Path) -> float:
    name = f"lightning-{next(NAMES)}"
    started = time.time()
    run(dsf("run", "-c", CONFIG, "--output", str(scratch), "--set", f"run.name={name}", *QUIET), cwd=scratch)
    return first_step(scratch / name / "results", started)


def torchrun(scratch: Path) -> float:
    run_id = f"t{next(NAMES)}"
    started = time.time()
    command = ["bash", str(REPO / "launchers" / "torchrun.sh"), CONFIG, "--set", f"run.output_root={scratch}", *QUIET]
    run(command, cwd=scratch, NPROC_PER_NODE="2", RUN_ID=run_id, DSF_PYTHON=sys.executable)
    return first_step(scratch / f"digits-{run_id}" / "results", started)


def slurm(cluster: LoopbackCluster, scratch: Path) -> float:
    folder = Path(tempfile.mkdtemp(dir=scratch))
    job_env = env(DSF_PYTHON=sys.executable, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    job_env["PATH"] = f"{Path(sys.executable).parent}:{job_env['PATH']}"
    started = time.time()
    job = cluster.sbatch("--cpus-per-task=1", str(REPO / "slurm" / "train.sh"), CONFIG, *QUIET, cwd=folder, env=job_env)
    return first_step(folder / "runs" / f"digits-{job}" / "results", started)


def ray(head: RayHead, scratch: Path) -> float:
    job = f"bench-{next(NAMES)}"
    started = time.time()
    submitted = head.job(
        "submit", "--no-wait", "--working-dir", str(REPO), "--submission-id", job, "--",
        "python", "-m", "dsf_dist.launchers.ray", "-c", "configs/ray.yaml",
        "--set", f"ray.storage_path={scratch}", *QUIET, timeout=120,
    )  # fmt: skip
    if submitted.returncode != 0:
        sys.exit(f"ray job submit failed: {submitted.stderr[-2000:]}")
    return first_step(scratch / f"digits-{job}" / "results", started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    cluster, head = LoopbackCluster(nodes=1).start(), RayHead().start()
    figures: dict[str, list[float]] = {"dsf run (Lightning's launcher)": [], "torchrun": [], "SLURM": [], "Ray": []}
    loads = [load()]
    try:
        with tempfile.TemporaryDirectory() as name:
            scratch = Path(name)
            for _ in range(args.repeats):
                launches = (lightning(scratch), torchrun(scratch), slurm(cluster, scratch), ray(head, scratch))
                for key, seconds in zip(figures, launches, strict=True):
                    figures[key].append(seconds)
                loads.append(load())
                time.sleep(5)  # let the last job's processes leave before the next launch is timed
    finally:
        head.stop()
        cluster.stop()
    rows = [f"| {key} | {median_range(values, 1)} s |" for key, values in figures.items()]
    body = (
        f"Machine: {machine()}; 1-minute load average during the run {min(loads)}–{max(loads)}. Command: "
        f"`python benchmarks/launchers.py --repeats {args.repeats}`. 2 ranks, DDP on gloo, configs/ddp.yaml; median "
        f"(range) of {args.repeats} alternating repeats of the seconds from the launch command to the first "
        "optimizer step.\n\n| launcher | to the first step |\n|---|---:|\n" + "\n".join(rows) + "\n"
    )
    print(body)
    if not args.no_append:
        append("Launchers: time to the first step", body)


if __name__ == "__main__":
    main()
