"""What happens once a preemption checkpoint is saved: requeue the SLURM job (at most run.max_requeues
restarts), or say how to continue. Training then stops on every rank with `Preempted`."""

from __future__ import annotations

import os
from collections.abc import Mapping

from dsf_dist.errors import DsfError
from dsf_dist.launch import slurm

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: stopped on purpose, a later run continues


class Preempted(Exception):
    """Training stopped at a step boundary after SIGUSR1/SIGTERM, with its checkpoint saved.

    `message` is the line for the user (rank zero only; None on the other ranks)."""

    exit_code = EXIT_PREEMPTED

    def __init__(self, message: str | None) -> None:
        super().__init__(message or "preempted")
        self.message = message


def after_checkpoint(
    saved: str, config: str, max_requeues: int, requeue_job: bool, env: Mapping[str, str] | None = None
) -> str:
    """Rank zero, once every rank has finished writing the checkpoint: requeue the SLURM job when asked to and
    allowed; the line telling the user what happened. `saved` says what stopped training and what was saved;
    `config` is the run's resolved config, which continues the same run folder."""
    env = os.environ if env is None else env
    job = slurm.job_to_requeue(env)
    if job is None:
        return f"stopped by {saved}; continue with the same command and --resume (or -c {config} --resume)"
    resubmit = f"continue with: sbatch slurm/train.sh {config}"
    if not requeue_job:
        return (
            f"stopped by {saved}; not requeued: SIGTERM means SLURM is ending job {job} (cancelled, time limit, or "
            f"its own preemption, which requeues the job itself when configured to); {resubmit}"
        )
    restarts = slurm.restart_count(env)
    if restarts >= max_requeues:
        return (
            f"preempted by {saved}; not requeued: job {job} has restarted {restarts} time(s) and "
            f"run.max_requeues is {max_requeues}; {resubmit}"
        )
    try:
        slurm.requeue(job)
    except DsfError as err:
        return f"preempted by {saved}; {err}; {resubmit}"
    return f"preempted by {saved}; requeued SLURM job {job} (restart {restarts + 1} of at most {max_requeues})"
