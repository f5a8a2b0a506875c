"""Crash and resume, repeatedly: SIGKILL the whole process group of a 2-rank `dsf run` mid-step, mid-checkpoint
write and mid-test, resume it each time with `--resume`, and check that every resume found a complete checkpoint,
that the final weights equal an uninterrupted run's bit for bit, that the results files are whole, and that no
file was written outside the run folder.

DDP is killed at all three points, FSDP mid-checkpoint. The kill points are random (seeded: DSF_CHAOS_SEED,
default 8) and printed, so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import dsf, results
from ranks import finish, kill_group, staging, start, wait_for

from dsf_dist.checkpoints import load_weights
from dsf_dist.run_folder import resumable

SEED = int(os.environ.get("DSF_CHAOS_SEED", "8"))
STRATEGIES = {
    "ddp": ["strategy.name=ddp"],
    "fsdp": ["strategy.name=fsdp", "strategy.fsdp.wrap_modules=[Linear]"],
}


def arguments(strategy: str, name: str) -> list[str]:
    sets = [
        *STRATEGIES[strategy],
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "existing_model.kind=none",
        "model.network_kwargs.hidden_sizes=[512,512]",  # a 3 MB checkpoint: its write can be interrupted
        f"run.name={name}",
    ]
    return ["run", "--output", "runs", *[arg for item in sets for arg in ("--set", item)]]


def kill_mid_step(run: Path, job, rng: random.Random) -> str:
    wait_for(lambda: (run / "logs" / "hparams.yaml").exists(), 180, "fit to start", job)
    delay = rng.uniform(0.2, 1.5)
    time.sleep(delay)
    return f"{delay:.2f} s into fit"


def kill_mid_checkpoint(run: Path, job, rng: random.Random) -> str:
    # A write that replaces an earlier checkpoint: the one a resume needs must survive it.
    last = run / "checkpoints" / "last.ckpt"
    wait_for(lambda: last.exists() and staging(run), 180, "a checkpoint write after the first", job, poll=0.001)
    return "while a checkpoint's staging copy was being written"


def kill_mid_test(run: Path, job, rng: random.Random) -> str:
    wait_for(lambda: (run / "results" / "train.json").exists(), 180, "fit to end", job, poll=0.001)
    delay = rng.uniform(0.0, 0.3)
    time.sleep(delay)
    tested = (run / "results" / "test.json").exists()
    return f"{delay:.2f} s after fit ended ({'test had finished' if tested else 'during test'})"


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
KILLS = {"ddp": [kill_mid_step, kill_mid_checkpoint, kill_mid_test], "fsdp": [kill_mid_checkpoint]}


def files_outside(root: Path, allowed: set[Path]) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not any(p.is_relative_to(a) for a in allowed)]


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_killed_and_resumed_runs_end_like_an_uninterrupted_one(tmp_path, strategy):
    rng = random.Random(f"{SEED}-{strategy}")
    reference = dsf(*arguments(strategy, "whole"), cwd=tmp_path, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    run = tmp_path / "runs" / "chaos"
    kills = KILLS[strategy]
    for attempt, kill in enumerate(kills):
        log = tmp_path / f"attempt{attempt}.log"
        job = start(*arguments(strategy, "chaos"), *([] if attempt == 0 else ["--resume"]), cwd=tmp_path, log=log)
        where = kill(run, job, rng)
        kill_group(job)
        print(f"[chaos seed {SEED}, {strategy}] kill {attempt + 1}: SIGKILL {where}; {check_whole(run)}")
    job = start(*arguments(strategy, "chaos"), "--resume", cwd=tmp_path, log=tmp_path / "final.log")
    assert finish(job, timeout=300) == 0, (tmp_path / "final.log").read_text()[-3000:]

    whole = tmp_path / "runs" / "whole"
    assert results(run, "train")["resumed_from"].endswith("last.ckpt")
    assert results(run, "train")["global_step"] == results(whole, "train")["global_step"]
    resumed, uninterrupted = (load_weights(folder / "checkpoints" / "last.ckpt") for folder in (run, whole))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)
    # Results whole: parseable, and the same test numbers as the uninterrupted run's.
    tested, expected = results(run, "test"), results(whole, "test")
    assert {k: v for k, v in tested.items() if k != "model"} == {k: v for k, v in expected.items() if k != "model"}
    assert json.loads((run / "results" / "done.json").read_text()) == {"exit_code": 0}
    with np.load(run / "results" / "test_predictions.npz", allow_pickle=False) as arrays:
        assert len(arrays["preds"]) == tested["num_samples"]
    logs = {tmp_path / name for name in ("final.log", *(f"attempt{i}.log" for i in range(len(kills))))}
    assert files_outside(tmp_path, {run, whole, *logs}) == []


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
