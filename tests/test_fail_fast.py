"""Failures end the job in bounded time under every launcher (DESIGN.md rule 5), measured from the moment of the
fault and printed:

- one rank of two raises (tests/interrupts.py:RaiseAt, a DsfError as a full disk on one rank would be) under
  torchrun as two nodes (two agents, `--nnodes=2`, c10d rendezvous on 127.0.0.1, no restarts), under srun on the
  loopback SLURM cluster, and under Ray with ray.max_failures=0: the whole job ends within BOUND_S, and its output
  names the rank and the error;
- with restarts allowed, a lost node (SIGKILL of one torchrun agent and its rank) is replaced: the other agent
  restarts its rank (MAX_RESTARTS=1), a new agent joins the rendezvous as a cluster scheduler would start one, and
  training runs again from the newest checkpoint; the time from the kill to the first resumed step is printed and
  bounded by RESTART_BOUND_S; a lost node that hosted the c10d store ends the other node's agent within BOUND_S
  (the rendezvous is gone, so no restart: the job is launched again).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, results, sets
from interrupts import paced, paced_steps
from ranks import children, in_group, wait_for
from slurm_cluster import free_port, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

BOUND_S = 60
RESTART_BOUND_S = 60
LAUNCHER = str(REPO / "launchers" / "torchrun.sh")
DDP = str(REPO / "configs" / "ddp.yaml")
QUICK = (
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "existing_model.kind=none",
    "throughput.enabled=false",
)
REASON = "InjectedFault: injected after step 3"


def raise_at(mark: Path, module: str = "interrupts") -> str:
    return f'callbacks=[{{target: "{module}:RaiseAt", kwargs: {{step: 3, rank: 1, mark: "{mark}"}}}}]'


def shell_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": pythonpath,
        "DSF_PYTHON": sys.executable,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def since_fault(mark: Path, ended: float) -> float:
    return ended - float(mark.read_text())


# -- torchrun, two nodes on loopback ---------------------------------------------------------------------------
def agent(tmp_path: Path, name: str, port: int, run_id: str, restarts: int, *overrides: str) -> subprocess.Popen:
    env = shell_env(
        NNODES="2", NPROC_PER_NODE="1", RDZV_ENDPOINT=f"127.0.0.1:{port}", RUN_ID=run_id, MAX_RESTARTS=str(restarts)
    )
    with open(tmp_path / f"{name}.log", "w") as log:
        return subprocess.Popen(
            [LAUNCHER, DDP, *sets(*QUICK, *overrides)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # an agent and its rank: one process group, a node to lose
        )


def two_agents(tmp_path: Path, port: int, run_id: str, restarts: int, *overrides: str) -> list[subprocess.Popen]:
    """Node 0's agent first, and node 1's once node 0 listens on the rendezvous port: node 0 hosts the c10d store,
    as the endpoint's host does on a cluster. (On loopback both agents are on the endpoint's host, and whichever
    binds the port first hosts the store: a node 1 that won that race took the store with it when it was lost.)"""
    first = agent(tmp_path, "node0", port, run_id, restarts, *overrides)
    wait_for(lambda: listening(port), 120, f"node 0's rendezvous store on port {port}", first)
    return [first, agent(tmp_path, "node1", port, run_id, restarts, *overrides)]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def log_of(tmp_path: Path, *names: str) -> str:
    return "\n".join((tmp_path / f"{name}.log").read_text() for name in names)


def descendants(pid: int) -> list[int]:
    found, parents = [], [pid]
    while parents:
        kids = children(parents.pop())
        found += kids
        parents += kids
    return found


def lose(node: subprocess.Popen) -> None:
    """SIGKILL a node: its agent's process group and every process below it (torchrun's ranks run in process groups
    of their own, so killing the agent's group alone leaves its rank training)."""
    below = descendants(node.pid)
    os.killpg(node.pid, signal.SIGKILL)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    node.wait(timeout=30)


def stop_all(agents: list[subprocess.Popen]) -> None:
    for process in agents:
        if process.poll() is None:
            lose(process)


def test_torchrun_two_nodes_a_rank_that_raises_ends_the_job(tmp_path):
    mark = tmp_path / "fault"
    agents = two_agents(tmp_path, free_port(), "ff", 0, raise_at(mark))
    try:
        codes = [process.wait(timeout=240) for process in agents]
        ended = time.time()
    finally:
        stop_all(agents)
    log = log_of(tmp_path, "node0", "node1")
    took = since_fault(mark, ended)
    print(f"torchrun, 2 nodes: every agent exited {took:.1f} s after rank 1 raised")
    assert all(code != 0 for code in codes) and took < BOUND_S, log[-4000:]
    assert f"dsf: error: rank 1: {REASON}; the job stops" in log, log[-4000:]  # the other rank's line
    assert not any(in_group(process.pid) for process in agents)


def test_torchrun_elastic_restart_after_a_lost_node_resumes_from_the_newest_checkpoint(tmp_path):
    pace = tmp_path / "steps.log"
    overrides = ("checkpoint.every_n_train_steps=2", paced(pace))
    port = free_port()
    agents = two_agents(tmp_path, port, "el", 1, *overrides)
    run = tmp_path / "runs" / "digits-el"
    try:
        last = run / "checkpoints" / "last.ckpt"
        wait_for(
            lambda: last.exists() and paced_steps(pace) and paced_steps(pace)[-1][1] >= 5, 240, "step 5", agents[0]
        )
        lost = time.time()
        lose(agents[1])  # node 1 is lost: its agent and its rank
        agents.append(agent(tmp_path, "node1-again", port, "el", 1, *overrides))  # its replacement
        codes = [agents[0].wait(timeout=300), agents[2].wait(timeout=300)]
    finally:
        stop_all(agents)
    log = log_of(tmp_path, "node0", "node1", "node1-again")
    assert codes == [0, 0], log[-4000:]
    # By process, not by time: node 0's first rank may still log the step whose collective node 1 finished just
    # before the kill. A later process is the restarted one: node 0's agent restarted its rank.
    first = paced_steps(pace)[0][2]
    before = [(at, step) for at, step, pid in paced_steps(pace) if pid == first]
    after = [(at, step) for at, step, pid in paced_steps(pace) if pid != first]
    assert after, log[-4000:]
    took = after[0][0] - lost
    print(f"torchrun elastic restart: training ran again {took:.1f} s after node 1 was lost (step {after[0][1]})")
    # From the newest checkpoint: the last even step the first process logged, or the one before it when the kill
    # came between that step's log line and its save.
    newest = max(step for _, step in before if step % 2 == 0)
    assert after[0][1] - 1 in (newest, newest - 2) and took < RESTART_BOUND_S, log[-4000:]
    record = results(run, "train")
    assert record["resumed_from"] == "checkpoints/last.ckpt" and record["global_step"] == 20


def test_torchrun_losing_the_node_that_hosts_the_rendezvous_ends_the_job(tmp_path):
    pace = tmp_path / "steps.log"
    agents = two_agents(tmp_path, free_port(), "host", 1, paced(pace))
    try:
        wait_for(lambda: len(paced_steps(pace)) >= 3, 240, "step 3", agents[0])
        lost = time.time()
        lose(agents[0])  # node 0 hosts the c10d store: the rendezvous goes with it
        code = agents[1].wait(timeout=120)
        took = time.time() - lost
    finally:
        stop_all(agents)
    log = log_of(tmp_path, "node1")
    print(f"torchrun, 2 nodes: node 1's agent exited {took:.1f} s after node 0, the rendezvous host, was lost")
    assert code != 0 and took < BOUND_S, log[-4000:]
    assert "RendezvousConnectionError" in log, log[-4000:]


# -- srun on the loopback SLURM cluster ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    with running_cluster(nodes=1) as loopback:
        yield loopback


@pytest.mark.slurm
def test_srun_a_rank_that_raises_ends_the_job(cluster, tmp_path):
    mark = tmp_path / "fault"
    env = shell_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    script = str(REPO / "slurm" / "train.sh")
    job = cluster.sbatch("--cpus-per-task=1", script, DDP, *sets(*QUICK, raise_at(mark)), cwd=tmp_path, env=env)
    final = cluster.wait_done(job, timeout=240)
    took = since_fault(mark, time.time())
    log = (tmp_path / f"dsf-{job}.out").read_text()
    print(f"srun: the job ended {took:.1f} s after rank 1 raised ({final['JobState']})")
    assert final["JobState"] == "FAILED" and took < BOUND_S, log[-4000:]
    # srun names the task that failed; the other rank's watchdog names it with the error, unless srun ended it first
    assert "injected after step 3" in log and ("task 1: Exited" in log or f"rank 1: {REASON}" in log), log[-4000:]


# -- Ray Train on a loopback head ------------------------------------------------------------------------------
@pytest.mark.ray
def test_ray_a_worker_that_raises_ends_the_job(head, tmp_path):
    mark = tmp_path / "fault"
    command = ["python", "-m", "dsf_dist.launchers.ray", "-c", "configs/ray.yaml"]
    command += sets(f"ray.storage_path={tmp_path}", *QUICK, "ray.max_failures=0", raise_at(mark, "tests.interrupts"))
    done = head.job("submit", "--working-dir", str(REPO), "--submission-id", "dsf-fail-fast", "--", *command)
    took = since_fault(mark, time.time())
    logs = head.job_logs("dsf-fail-fast")
    print(f"Ray: the job ended {took:.1f} s after rank 1 raised")
    assert head.job_info("dsf-fail-fast")["status"] == "FAILED" and took < BOUND_S, logs[-4000:] + done.stderr
    failed = [line for line in logs.splitlines() if line.startswith("dsf: error: Ray Train gave up")]
    assert failed and "rank 1" in failed[0] and "injected after step 3" in failed[0], logs[-4000:]
