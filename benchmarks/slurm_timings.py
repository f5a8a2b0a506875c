"""Time from `sbatch` to results, and from SIGUSR1 to the job running again, on a loopback SLURM cluster.

    python benchmarks/slurm_timings.py [--repeats 3] [--epochs 2] [--preempt-epochs 30]

Brings up the cluster the tests use (tests/slurm_cluster.py: munged, slurmctld, two slurmd on this host, with
AuthInfo=cred_expire=10 and SchedulerParameters=bf_interval=1,sched_interval=2), submits slurm/train.sh with
configs/ddp.yaml (2 tasks on one node, 1 CPU each), follows each job by polling `scontrol show job` every
50 ms, and prints Markdown tables. Also times the preemption protocol's per-step agreement (one all-reduce
of the flag) on 2 gloo ranks. Must run as root (the cluster's daemons).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from slurm_cluster import LoopbackCluster, free_port  # noqa: E402

SCRIPT = str(REPO / "slurm" / "train.sh")
CONFIG = str(REPO / "configs" / "ddp.yaml")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}


def job_env() -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {
        **os.environ,
        "PATH": path,
        "DSF_PYTHON": sys.executable,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }


def submit(cluster: LoopbackCluster, folder: Path, epochs: int) -> tuple[str, float]:
    started = time.perf_counter()
    job = cluster.sbatch(
        "--cpus-per-task=1", SCRIPT, CONFIG, "--set", f"trainer.max_epochs={epochs}",
        "--set", "trainer.enable_progress_bar=false", cwd=folder, env=job_env(),
    )  # fmt: skip
    return job, started


def follow(cluster: LoopbackCluster, job: str, since: float, restarts: int, timeout: float = 600) -> dict[str, float]:
    """Seconds after `since` at which the job first showed each 'STATE/restarts' it went through, until it ends
    after `restarts` restarts."""
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        fields = cluster.details(job)
        seen.setdefault(f"{fields.get('JobState')}/{fields.get('Restarts')}", time.perf_counter() - since)
        if fields.get("JobState") in FINAL and fields.get("Restarts") == str(restarts):
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"job {job}: {seen}")


def sbatch_to_results(cluster: LoopbackCluster, scratch: Path, epochs: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(dir=scratch))
    job, started = submit(cluster, folder, epochs)
    seen = follow(cluster, job, started, restarts=0)
    results = folder / "runs" / f"digits-{job}" / "results"
    assert "COMPLETED/0" in seen and (results / "done.json").is_file(), (seen, job)
    fit = json.loads((results / "train.json").read_text())["fit_seconds"]
    return {"running": seen["RUNNING/0"], "completed": seen["COMPLETED/0"], "fit": fit}


def usr1_to_running(cluster: LoopbackCluster, scratch: Path, epochs: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(dir=scratch))
    job, _ = submit(cluster, folder, epochs)
    last = folder / "runs" / f"digits-{job}" / "checkpoints" / "last.ckpt"
    while not last.exists():  # the first epoch's checkpoint: training is under way
        time.sleep(0.05)
    signalled = time.perf_counter()
    cluster.client("scancel", "--signal=USR1", "--full", job)
    seen = follow(cluster, job, signalled, restarts=1)
    log = (folder / f"dsf-{job}.out").read_text()
    assert "COMPLETED/1" in seen and "requeued SLURM job" in log, (seen, log[-2000:])
    return {
        "left_running": min(value for key, value in seen.items() if key != "RUNNING/0"),
        "running_again": seen["RUNNING/1"],
        "completed": seen["COMPLETED/1"],
    }


def agreement_cost(steps: int = 2000) -> float:
    """Microseconds per all-reduce(max) of one int on 2 gloo ranks (the Preemption callback's per-step check)."""
    import torch.multiprocessing as mp

    port = free_port()
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_agree, args=(port, steps, queue), nprocs=2, join=True)
    return queue.get()


def _agree(rank: int, port: int, steps: int, queue) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    flag = torch.tensor(0)
    for _ in range(100):
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    started = time.perf_counter()
    for _ in range(steps):
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    elapsed = time.perf_counter() - started
    if rank == 0:
        queue.put(elapsed / steps * 1e6)
    dist.destroy_process_group()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="max_epochs of the sbatch-to-results runs")
    parser.add_argument("--preempt-epochs", type=int, default=30, help="max_epochs of the preempted runs")
    args = parser.parse_args()

    import torch

    print(
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}; Slurm from Debian (`sinfo -V`), loopback cluster "
        "of two nodes on this host."
    )
    cluster_started = time.perf_counter()
    cluster = LoopbackCluster(nodes=2).start()
    up = time.perf_counter() - cluster_started
    print(cluster.client("sinfo", "-V").stdout.strip(), f"; cluster up (daemons to nodes idle): {up:.2f} s")
    scratch = Path(tempfile.mkdtemp(prefix="dsf-slurm-timings-"))
    try:
        runs = [sbatch_to_results(cluster, scratch, args.epochs) for _ in range(args.repeats)]
        stops = [usr1_to_running(cluster, scratch, args.preempt_epochs) for _ in range(args.repeats)]
    finally:
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    cost = agreement_cost()

    print(f"\nsbatch slurm/train.sh configs/ddp.yaml, {args.epochs} epochs, {args.repeats} runs: median (min-max)\n")
    print("| from sbatch to | seconds |\n|---|---|")
    print(f"| job RUNNING | {spread([r['running'] for r in runs])} |")
    print(f"| job COMPLETED (train, test, eval, compare written) | {spread([r['completed'] for r in runs])} |")
    print(f"| (of which Lightning fit, from train.json) | {spread([r['fit'] for r in runs])} |")
    print(f"\nscancel --signal=USR1 --full, {args.preempt_epochs}-epoch runs, {args.repeats} runs\n")
    print("| from the USR1 signal to | seconds |\n|---|---|")
    print(
        f"| the job leaving RUNNING (checkpoint saved, requeue asked) | {spread([s['left_running'] for s in stops])} |"
    )
    print(f"| the job RUNNING again (Restarts=1) | {spread([s['running_again'] for s in stops])} |")
    print(f"| the resumed job COMPLETED with all results | {spread([s['completed'] for s in stops])} |")
    print(f"\nper-step agreement (all-reduce of the flag), 2 gloo ranks: {cost:.0f} us per step")


if __name__ == "__main__":
    main()
