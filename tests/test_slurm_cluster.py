"""slurm/train.sh against a real SLURM cluster on loopback (tests/slurm_cluster.py): one node, two nodes,
preempt-requeue-resume, a finished run requeued, and bad input that must end in one line, never a hang.

Jobs are submitted with `sbatch` and followed by polling (squeue / scontrol show job), never `sbatch --wait`.
Missing Debian packages fail these tests: CI installs them (.ci/run), so a skip would hide a broken setup.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, results
from hold_points import hold_env, read_marker
from slurm_cluster import free_port, running_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = str(REPO / "slurm" / "train.sh")
DDP = str(REPO / "configs" / "ddp.yaml")
QUIET = ("--set", "trainer.enable_progress_bar=false")
ONE_CPU = "--cpus-per-task=1"  # the loopback nodes have 2 CPUs; train.sh asks 8 per task by default
STEPS_PER_EPOCH_AT_2_RANKS = 10  # 1,257 training samples / 2 ranks / batch 64


@pytest.fixture(scope="session")
def cluster():
    with running_cluster(nodes=2) as loopback:
        yield loopback


def job_env(**extra: str) -> dict[str, str]:
    """What a user's shell would hold at sbatch time: the venv's python first on PATH. The node names n1, n2 do
    not resolve on this host, so the ranks meet at 127.0.0.1 on a free port (train.sh documents both)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {
        **os.environ,
        "PATH": path,
        "DSF_PYTHON": sys.executable,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def output(folder: Path, job: str) -> str:
    return (folder / f"dsf-{job}.out").read_text()


def test_one_node_two_tasks_runs_the_whole_pipeline(cluster, tmp_path):
    job = cluster.sbatch(ONE_CPU, SCRIPT, DDP, "--set", "trainer.max_epochs=2", *QUIET, cwd=tmp_path, env=job_env())
    final = cluster.wait_done(job, timeout=240)
    log = output(tmp_path, job)
    assert (final["JobState"], final["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert f"train.sh: job {job}, restart 0: 1 node(s) x 2 task(s)" in log
    run = tmp_path / "runs" / f"digits-{job}"  # named by the job id, so every rank and every restart agree
    for name in ("train", "test", "eval", "comparison", "done"):
        assert (run / "results" / f"{name}.json").is_file(), name
    assert results(run, "train")["global_step"] == 2 * STEPS_PER_EPOCH_AT_2_RANKS  # two ranks shared each epoch
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()


def test_two_nodes(cluster, tmp_path):
    job = cluster.sbatch(
        "--nodes=2", "--ntasks-per-node=1", ONE_CPU, SCRIPT, DDP,
        "--set", "trainer.max_epochs=2", *QUIET, cwd=tmp_path, env=job_env(),
    )  # fmt: skip
    final = cluster.wait_done(job, timeout=240)
    log = output(tmp_path, job)
    assert (final["JobState"], final["ExitCode"], final["NodeList"]) == ("COMPLETED", "0:0", "n[1-2]"), log[-3000:]
    assert f"train.sh: job {job}, restart 0: 2 node(s) x 1 task(s)" in log
    run = tmp_path / "runs" / f"digits-{job}"
    assert results(run, "train")["global_step"] == 2 * STEPS_PER_EPOCH_AT_2_RANKS  # world size 2 across the nodes
    assert (run / "results" / "comparison.json").is_file()


def test_usr1_checkpoints_requeues_and_resumes_where_it_stopped(cluster, tmp_path):
    # Rank 0 holds in the second epoch, after the first epoch's checkpoint. The ranks compare their flags about
    # every 0.5 s of steps (hooks/preemption.py), so the planned run goes on well past that after the signal.
    epochs, held_at = 20, 12
    marker, release = tmp_path / "held.json", tmp_path / "release"
    hold = hold_env("train_step", marker, rank=0, step=held_at, release=release)  # the requeued job passes it
    path = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    job = cluster.sbatch(
        ONE_CPU, SCRIPT, DDP, "--set", f"trainer.max_epochs={epochs}", *QUIET,
        "--set", "callbacks=[{target: 'hold_points:HoldAt'}]",
        cwd=tmp_path, env=job_env(PYTHONPATH=path, **hold),
    )  # fmt: skip
    run = tmp_path / "runs" / f"digits-{job}"
    deadline = time.monotonic() + 180
    while read_marker(marker) is None:  # training is under way, and rank 0 is inside a step
        assert time.monotonic() < deadline and cluster.state(job) in ("PENDING", "RUNNING"), output(tmp_path, job)
        time.sleep(0.1)
    cluster.client("scancel", "--signal=USR1", "--full", job)  # what --signal=USR1@180 sends before the limit
    release.touch()

    final = cluster.wait_done(job, timeout=300)
    log = output(tmp_path, job)
    assert (final["JobState"], final["ExitCode"], final["Restarts"]) == ("COMPLETED", "0:0", "1"), log[-3000:]
    preempted = re.search(
        rf"dsf: preempted by SIGUSR1 at step (\d+): checkpoint saved to (\S+); requeued SLURM job {job} "
        r"\(restart 1 of at most 3\)",
        log,
    )
    assert preempted, log[-3000:]
    step, saved = int(preempted.group(1)), preempted.group(2)
    assert saved.endswith(f"runs/digits-{job}/checkpoints/last.ckpt")
    assert f"train.sh: job {job}, restart 1:" in log  # the same job, started again by SLURM
    record = results(run, "train")
    total = epochs * STEPS_PER_EPOCH_AT_2_RANKS
    assert held_at < step < total  # stopped mid-training, at the step boundary after the signal ...
    assert record["resumed_from"].endswith("checkpoints/last.ckpt")  # ... resumed from that checkpoint ...
    assert record["global_step"] == total  # ... and trained exactly the planned steps, none twice
    assert record["fit_seconds"] > 0
    for name in ("test", "eval", "comparison", "done"):
        assert (run / "results" / f"{name}.json").is_file(), name
    with open(run / "logs" / "metrics.csv", newline="") as handle:
        logged = {int(row["epoch"]) for row in csv.DictReader(handle)}
    assert logged == set(range(epochs)), logged  # the rows logged before the preemption are kept

    # SLURM restarting a finished job (a node failure, a stray requeue) must not run it again.
    finished = (run / "results" / "comparison.json").stat().st_mtime_ns
    cluster.client("scontrol", "requeue", job)
    cluster.wait_for(job, {"PENDING", "RUNNING", "COMPLETING"}, timeout=30)
    again = cluster.wait_done(job, timeout=120)
    assert (again["JobState"], again["ExitCode"], again["Restarts"]) == ("COMPLETED", "0:0", "2")
    assert f"run folder: runs/digits-{job} already finished" in output(tmp_path, job)
    assert (run / "results" / "comparison.json").stat().st_mtime_ns == finished


def fake_path_without_srun(folder: Path) -> str:
    """A PATH that has bash and python but no SLURM commands: the script runs as if srun were missing."""
    folder.mkdir()
    for tool, target in (("bash", "/bin/bash"), ("python", sys.executable)):
        (folder / tool).symlink_to(target)
    return str(folder)


WITHOUT_SRUN = f"{sys.executable} -m dsf_dist run -c {DDP}"
# case: (sbatch arguments, the one line the job's output must hold)
BAD_INPUT = {
    "missing config": (
        [ONE_CPU, SCRIPT, "configs/missing.yaml"],
        r"train\.sh: error: config 'configs/missing\.yaml' not found",
    ),
    "hostile config path": (
        [ONE_CPU, SCRIPT, "x$(touch pwned)`touch pwned`;touch pwned"],
        r"train\.sh: error: config 'x\$\(touch pwned\)`touch pwned`;touch pwned' not found",
    ),
    "no config": ([ONE_CPU, SCRIPT], r"train\.sh: error: no config given"),
    "uneven tasks": (
        ["--nodes=2", "--ntasks=3", ONE_CPU, SCRIPT, DDP],
        r"train\.sh: error: the allocation has 3 task\(s\) on 2 node\(s\)",
    ),
    "devices against the allocation": (
        [ONE_CPU, SCRIPT, DDP, "--set", "trainer.devices=1"],
        r"train\.sh: error: --set trainer\.devices=1 contradicts the allocation's 2 task\(s\) per node",
    ),
    "gpus against tasks": (
        [ONE_CPU, "--gpus-per-node=1", SCRIPT, DDP],
        r"train\.sh: error: the allocation has 1 GPU\(s\) per node but 2 task\(s\) per node",
    ),
    "bad config key": (
        [ONE_CPU, SCRIPT, DDP, "--set", "trainer.max_epoch=2"],
        r"dsf: error: --set trainer\.max_epoch=2: trainer\.max_epoch: unknown key; did you mean max_epochs\?",
    ),
    "dsf without srun": (
        [ONE_CPU, "--ntasks-per-node=2", "--output=dsf-%j.out", "--wrap", WITHOUT_SRUN],
        r"dsf: error: SLURM job \d+ has 2 tasks but dsf was started without srun",
    ),
    "srun missing": ([ONE_CPU, SCRIPT, DDP], r"train\.sh: error: srun not found on PATH"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_ends_the_job_with_one_line(cluster, tmp_path, case):
    args, expected = BAD_INPUT[case]
    if case == "gpus against tasks" and not cluster.gpus:
        pytest.fail("the loopback cluster has no fake GPUs: mknod of their character devices was not permitted")
    env = job_env(PATH=fake_path_without_srun(tmp_path / "bin")) if case == "srun missing" else job_env()
    job = cluster.sbatch(*args, cwd=tmp_path, env=env)
    final = cluster.wait_done(job, timeout=60)  # bounded: a hang fails here
    lines = [line for line in output(tmp_path, job).splitlines() if line.strip()]
    assert final["JobState"] == "FAILED" and final["ExitCode"] != "0:0", lines
    assert len(lines) == 1 and re.fullmatch(expected + ".*", lines[0]), lines
    assert not (tmp_path / "pwned").exists()
