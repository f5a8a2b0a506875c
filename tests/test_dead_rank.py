"""A dead or hung rank ends a 2-rank DDP job within a bounded time, with one line naming the lost rank, stacks in
the run folder, and no process left behind (checked by process group). Prints each time to exit."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from ranks import in_group, other_ranks, staging, start, wait_for

BOUND_S = 60
COMMON = [
    "run",
    "--output",
    "runs",
    "--set",
    "strategy.name=ddp",
    "--set",
    "trainer.devices=2",
    "--set",
    "trainer.max_epochs=1",
    "--set",
    "trainer.enable_progress_bar=false",
    "--set",
    "existing_model.kind=none",
    "--set",
    "run.name=r",
    "--set",  # a checkpoint of about 13 MB, so that its write lasts long enough to be interrupted
    "model.network_kwargs.hidden_sizes=[1024,1024]",
]


# phase -> (the moment to act, which rank to kill)
PHASES = {
    "train_step": (lambda run: (run / "logs" / "hparams.yaml").exists(), 1),
    "checkpoint": (staging, 1),
    "test": (lambda run: (run / "results" / "train.json").exists(), 0),
}


def started(tmp_path, *extra: str):
    job = start(*COMMON, *extra, cwd=tmp_path, log=tmp_path / "log.txt")
    wait_for(lambda: other_ranks(job.pid), 120, "rank 1 to start", job)
    return job, tmp_path / "runs" / "r"


def time_to_exit(job, since: float) -> float:
    wait_for(lambda: not in_group(job.pid), BOUND_S, "every rank to exit")
    job.wait(timeout=5)
    return time.monotonic() - since


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_killed_rank_ends_the_job_naming_it(tmp_path, phase):
    job, run = started(tmp_path)
    moment, victim = PHASES[phase]
    wait_for(lambda: moment(run), 120, f"the {phase} phase", job, poll=0.001)
    if phase == "train_step":
        time.sleep(0.3)  # inside the epoch's steps
    pids = {0: job.pid, 1: other_ranks(job.pid)[0]}
    os.kill(pids[victim], signal.SIGKILL)
    seconds = time_to_exit(job, time.monotonic())
    log = (tmp_path / "log.txt").read_text()
    survivor = 1 - victim
    print(f"rank {victim} killed during {phase}: every rank gone after {seconds:.2f} s")
    assert seconds < BOUND_S
    assert job.returncode != 0
    lines = [line for line in log.splitlines() if line.startswith("dsf: error:")]
    assert len(lines) == 1 and f"rank {victim} lost" in lines[0], log[-3000:]
    assert "Traceback" not in log
    assert (run / "logs" / f"stacks-rank{survivor}.txt").read_text().count("File ") > 3
    assert not (run / "results" / "done.json").exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_a_hung_rank_times_out_with_stacks_and_flight_recorder(tmp_path):
    """SIGSTOP freezes rank 1 early in fit: rank 0 waits in a collective (a sanity-check or training step) until
    that phase's deadline, then writes its stacks and torch's flight recorder, ends rank 1 and exits naming the
    phase and the timeout."""
    deadlines = ["--set", "strategy.timeouts.train_step_s=5", "--set", "strategy.timeouts.test_s=5"]
    job, run = started(tmp_path, *deadlines)
    wait_for(lambda: (run / "logs" / "hparams.yaml").exists(), 120, "fit to start", job)
    time.sleep(0.3)
    os.kill(other_ranks(job.pid)[0], signal.SIGSTOP)
    seconds = time_to_exit(job, time.monotonic())
    print(f"rank 1 frozen early in fit: every rank gone after {seconds:.2f} s (phase deadlines 5 s)")
    log = (tmp_path / "log.txt").read_text()
    assert 5 <= seconds < BOUND_S and job.returncode == 1
    lines = [line for line in log.splitlines() if line.startswith("dsf: error:")]
    assert len(lines) == 1 and re.search(r"rank 0: (train_step|test) took longer than strategy.timeouts", lines[0]), log
    stacks = (run / "logs" / "stacks-rank0.txt").read_text()
    assert "Current thread" in stacks and "pytorch_lightning" in stacks, stacks
    assert b'"profiling_name":"gloo:' in (run / "logs" / "flight-recorder-rank0.json").read_bytes()
