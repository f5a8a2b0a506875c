"""Crash and resume, repeatedly: SIGKILL the whole process group of a 2-rank `dsf run` mid-step, mid-checkpoint
write and mid-test, resume it each time with `--resume`, and check that every resume found a complete checkpoint,
that the final weights and optimizer state equal an uninterrupted run's bit for bit, that the results files are
whole, and that no file was written outside the run folder.

Where each kill lands is an event, not a timer: the run holds rank 0 at the chosen point (tests/hold_points.py)
and the test kills the group while it is held. Each kill asserts where it landed. DDP is killed at all three
points, FSDP mid-checkpoint; the step of the mid-step kill and the test batch of the mid-test one are random
(seeded: DSF_CHAOS_SEED, default 8) and printed, so a failure can be replayed. The uninterrupted run is the
session's shared one (tests/shared_runs.py).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import results
from hold_points import hold_env, read_marker
from ranks import finish, kill_group, start, wait_for
from shared_runs import EPOCHS, STRATEGIES, TWO_RANKS, assert_same_tensors, optimizer_state, reference_run

from dsf_dist.checkpoints import load_weights
from dsf_dist.run_folder import resumable

SEED = int(os.environ.get("DSF_CHAOS_SEED", "8"))
STEPS = EPOCHS * 10  # 1,257 training samples / 2 ranks / batch 64: 10 steps an epoch
TEST_BATCHES = 3  # 270 test samples / 2 ranks / batch 64


def arguments(strategy: str) -> list[str]:
    sets = [
        *STRATEGIES[strategy],
        *TWO_RANKS,
        f"trainer.max_epochs={EPOCHS}",
        "existing_model.kind=none",
        "callbacks=[{target: 'hold_points:HoldAt'}]",  # holds only when a kill below arms it
        "run.name=chaos",
    ]
    return ["run", "--output", "runs", *[arg for item in sets for arg in ("--set", item)]]


class Kill:
    """One kill point: the environment that arms it, and the wait for the moment (which says where it landed)."""

    def __init__(self, run: Path, marker: Path, rng: random.Random) -> None:
        self.run, self.marker, self.rng = run, marker, rng

    def env(self) -> dict[str, str]:
        return {}

    def wait(self, job) -> str:
        raise NotImplementedError

    def held(self, job, what: str) -> dict:
        return wait_for(lambda: read_marker(self.marker), 180, what, job)


class MidStep(Kill):
    def env(self) -> dict[str, str]:
        self.step = self.rng.randint(1, STEPS - 1)
        return hold_env("train_step", self.marker, rank=0, step=self.step)

    def wait(self, job) -> str:
        held = self.held(job, f"rank 0 to reach training step {self.step + 1}")
        assert held["global_step"] == self.step and 0 < self.step < STEPS, held  # after a step, before the last
        assert not (self.run / "results" / "train.json").exists()
        return f"mid-step: between forward and backward of step {self.step + 1} of {STEPS}"


class MidCheckpoint(Kill):
    def env(self) -> dict[str, str]:
        return hold_env("checkpoint", self.marker, rank=0, replacing=True)

    def wait(self, job) -> str:
        held = self.held(job, "a checkpoint write that replaces last.ckpt")
        staging = Path(held["staging"])
        assert staging.exists() and staging.parent == self.run / "checkpoints", held
        assert (self.run / "checkpoints" / "last.ckpt").exists()  # the one a resume needs, not yet replaced
        return f"mid-checkpoint: {staging.name} written, not yet published, at step {held['global_step']}"


class MidTest(Kill):
    def env(self) -> dict[str, str]:
        self.batch = self.rng.randint(0, TEST_BATCHES - 1)
        return hold_env("test", self.marker, rank=0, step=self.batch)

    def wait(self, job) -> str:
        fitted = self.run / "results" / "train.json"
        assert not fitted.exists()  # what is waited for below is this attempt's
        held = self.held(job, f"rank 0 to reach test batch {self.batch + 1}")
        assert held["batch"] == self.batch and fitted.exists(), held
        return f"mid-test: before test batch {self.batch + 1} of {TEST_BATCHES}"

    def landed(self) -> None:
        assert not (self.run / "results" / "test.json").exists(), "the kill came after test had finished"


def check_whole(run: Path) -> str:
    """The checkpoint a resume would start from loads completely (never a torn one); its description."""
    last = resumable(run / "checkpoints" / "last.ckpt")
    if last is None:
        return "no checkpoint yet: the resume starts afresh"
    weights = load_weights(last)
    assert weights and all(torch.isfinite(value).all() for value in weights.values())
    return f"resumes from {Path(last).name} (whole: {len(weights)} tensors)"


# DDP is killed at all three points; FSDP (a sharded checkpoint folder, published by two renames) mid-write only,
# to keep the test's time within CI's budget.
KILLS = {"ddp": [MidStep, MidCheckpoint, MidTest], "fsdp": [MidCheckpoint]}


def files_outside(root: Path, allowed: set[Path]) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not any(p.is_relative_to(a) for a in allowed)]


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("strategy", list(KILLS))
def test_killed_and_resumed_runs_end_like_an_uninterrupted_one(tmp_path, trained_run, strategy):
    rng = random.Random(f"{SEED}-{strategy}")
    whole = reference_run(trained_run, strategy)
    run, holds = tmp_path / "runs" / "chaos", tmp_path / "holds"
    holds.mkdir()
    for attempt, point in enumerate(KILLS[strategy]):
        kill = point(run, holds / f"attempt{attempt}.json", rng)
        log = tmp_path / f"attempt{attempt}.log"
        resume = [] if attempt == 0 else ["--resume"]
        job = start(*arguments(strategy), *resume, cwd=tmp_path, log=log, env=kill.env())
        where = kill.wait(job)
        kill_group(job)
        if isinstance(kill, MidTest):
            kill.landed()
        print(f"[chaos seed {SEED}, {strategy}] kill {attempt + 1}: SIGKILL {where}; {check_whole(run)}")
    job = start(*arguments(strategy), "--resume", cwd=tmp_path, log=tmp_path / "final.log")
    assert finish(job, timeout=300) == 0, (tmp_path / "final.log").read_text()[-3000:]

    assert results(run, "train")["resumed_from"].endswith("last.ckpt")
    assert results(run, "train")["global_step"] == results(whole, "train")["global_step"]
    resumed, uninterrupted = (folder / "checkpoints" / "last.ckpt" for folder in (run, whole))
    assert_same_tensors(load_weights(resumed), load_weights(uninterrupted))
    assert_same_tensors(optimizer_state(resumed), optimizer_state(uninterrupted))
    # Results whole: parseable, and the same test numbers as the uninterrupted run's.
    tested, expected = results(run, "test"), results(whole, "test")
    assert {k: v for k, v in tested.items() if k != "model"} == {k: v for k, v in expected.items() if k != "model"}
    assert json.loads((run / "results" / "done.json").read_text()) == {"exit_code": 0}
    with np.load(run / "results" / "test_predictions.npz", allow_pickle=False) as arrays:
        assert len(arrays["preds"]) == tested["num_samples"]
    logs = {tmp_path / name for name in ("final.log", *(f"attempt{i}.log" for i in range(len(KILLS[strategy]))))}
    assert files_outside(tmp_path, {run, holds, *logs}) == []


def test_a_kill_before_the_config_was_written_does_not_block_the_resume(tmp_path):
    """Rank zero makes the run folder, then writes config.yaml: a kill between the two leaves an empty folder."""
    from dsf_dist.config import load_config
    from dsf_dist.errors import RunFolderError
    from dsf_dist.run_folder import RunFolder

    run = RunFolder(tmp_path / "r")
    run.root.mkdir()
    fresh = load_config(overrides=["run.name=r", f"run.output_root={tmp_path}"])
    with pytest.raises(RunFolderError, match="already exists"):
        run.prepare(fresh, write=True)
    resumed = load_config(overrides=["run.name=r", f"run.output_root={tmp_path}", "run.resume=auto"])
    assert run.prepare(resumed, write=True) is None and run.config.is_file()
