"""SLURM: refuse a launch that would hang, hand Lightning SLURM's environment, and requeue a preempted job.
Only this module talks to SLURM.

Without srun, a batch shell inside a multi-task allocation looks to Lightning like rank 0 of SLURM_NTASKS
ranks, and it waits for the others forever (FACTS.md). With srun, a rank count that differs from the
config's devices x num_nodes does the same. Both are refused here, in one line, before torch is imported.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from typing import Any

from dsf_dist.errors import ConfigError, DsfError
from dsf_dist.launchers.environment import refuse_spawning

INTERACTIVE_JOB_NAMES = ("bash", "interactive")  # Lightning ignores SLURM in jobs named so (its own convention)


def check_srun(trainer: Mapping[str, Any], strategy: str, env: Mapping[str, str]) -> None:
    """Inside a SLURM job, the ranks srun started must be the ranks the config asks for."""
    if "SLURM_JOB_ID" not in env or env.get("SLURM_JOB_NAME") in INTERACTIVE_JOB_NAMES:
        return
    tasks = int(env.get("SLURM_NTASKS", "1"))
    if "SLURM_STEP_ID" not in env:
        if tasks > 1:
            raise ConfigError(
                f"SLURM job {env['SLURM_JOB_ID']} has {tasks} tasks but dsf was started without srun, so rank 0 "
                "would wait forever for the others; start it with srun (slurm/train.sh does)"
            )
        return
    refuse_spawning(strategy, "srun", "already started one task per device", "srun")
    if tasks > 1 and "SLURM_NTASKS_PER_NODE" not in env:
        raise ConfigError(
            f"SLURM job {env['SLURM_JOB_ID']} gives {tasks} tasks without --ntasks-per-node, which Lightning needs; "
            "submit with --nodes=N --ntasks-per-node=<devices per node> instead of --ntasks"
        )
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes", 1)
    step_nodes = int(env.get("SLURM_STEP_NUM_NODES", env.get("SLURM_NNODES", "1")))
    per_node = tasks_on_each_node(env.get("SLURM_STEP_TASKS_PER_NODE", env.get("SLURM_TASKS_PER_NODE", "1")))
    if not isinstance(devices, int) or devices < 1:
        raise ConfigError(
            f"trainer.devices: {devices!r} under srun; give the number of tasks srun starts per node "
            f"(--set trainer.devices={per_node or tasks})"
        )
    if per_node is None:
        raise ConfigError(
            f"srun started {tasks} tasks unevenly on {step_nodes} nodes; dsf needs the same number on every node: "
            "submit with --nodes=N --ntasks-per-node=<devices per node> instead of --ntasks"
        )
    if devices != per_node or nodes != step_nodes or devices * nodes != tasks:
        raise ConfigError(
            f"trainer.devices={devices} x trainer.num_nodes={nodes} does not match the {tasks} task(s) srun started "
            f"({per_node} per node on {step_nodes} node(s)); make them equal: --set trainer.devices={per_node} "
            f"--set trainer.num_nodes={step_nodes}, or sbatch --ntasks-per-node={devices} --nodes={nodes}"
        )


def tasks_on_each_node(spec: str) -> int | None:
    """SLURM's tasks-per-node list ('2(x3)', '2', '2,1') as one count, or None when nodes differ."""
    counts = {int(match.group(1)) for match in re.finditer(r"(\d+)(?:\(x\d+\))?", spec)}
    return counts.pop() if len(counts) == 1 else None


def job_to_requeue(env: Mapping[str, str]) -> str | None:
    """The id `scontrol requeue` takes for this job (an array task's own id), or None outside a batch job."""
    if "SLURM_JOB_ID" not in env or env.get("SLURM_JOB_NAME") in INTERACTIVE_JOB_NAMES:
        return None
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def restart_count(env: Mapping[str, str]) -> int:
    """How often SLURM has restarted this job (SLURM_RESTART_COUNT; absent on the first start)."""
    return int(env.get("SLURM_RESTART_COUNT") or 0)


def requeue(job_id: str) -> None:
    """`scontrol requeue JOB`: SLURM ends this run of the job and queues it again under the same id."""
    if not re.fullmatch(r"[0-9]+(_[0-9]+)?", job_id):
        raise DsfError(f"SLURM_JOB_ID {job_id!r} is not a job id; cannot requeue")
    try:
        done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DsfError(f"scontrol requeue {job_id} failed ({err})") from None
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise DsfError(f"scontrol requeue {job_id} failed ({reason[-1] if reason else f'exit {done.returncode}'})")


def after_checkpoint(
    saved: str, config: str, max_requeues: int, requeue_job: bool, env: Mapping[str, str] | None = None
) -> str:
    """Rank zero, once every rank has finished writing a preemption checkpoint: requeue the SLURM job when asked to
    and allowed (at most run.max_requeues restarts); the line telling the user what happened. `saved` says what
    stopped training and what was saved; `config` is the run's resolved config, which continues the same run."""
    env = os.environ if env is None else env
    job = job_to_requeue(env)
    if job is None:
        if "TORCHELASTIC_RUN_ID" in env:  # the run folder is named from the run id: the same launch finds it
            return f"stopped by {saved}; continue with the same torchrun command (same --rdzv-id) and --resume"
        return f"stopped by {saved}; continue with `dsf run -c {config} --resume` (or `dsf train -c {config} --resume`)"
    resubmit = f"continue with: sbatch slurm/train.sh {config}"
    if not requeue_job:
        return (
            f"stopped by {saved}; not requeued: SIGTERM means SLURM is ending job {job} (cancelled, time limit, or "
            f"its own preemption, which requeues the job itself when configured to); {resubmit}"
        )
    restarts = restart_count(env)
    if restarts >= max_requeues:
        return (
            f"preempted by {saved}; not requeued: job {job} has restarted {restarts} time(s) and "
            f"run.max_requeues is {max_requeues}; {resubmit}"
        )
    try:
        requeue(job)
    except DsfError as err:
        return f"preempted by {saved}; {err}; {resubmit}"
    return f"preempted by {saved}; requeued SLURM job {job} (restart {restarts + 1} of at most {max_requeues})"


def cluster_environment() -> list[Any]:
    """SLURM's environment when Lightning would detect it (srun tasks, or a one-task batch shell), without its
    auto-requeue: that checkpoints inside the signal handler, and dsf's Preemption callback requeues instead."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def callbacks(run_root: Any) -> list[Any]:
    return []
