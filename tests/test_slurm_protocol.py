"""The preemption protocol and the launch checks, without a cluster: one-line refusals before a launch that
would hang, atomic checkpoint publishing (a crash between renames still resumes), the requeue decision, a
finished run not run again, and a real 2-rank fit stopped by SIGTERM on one rank, then resumed."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, results
from hold_points import hold_env, read_marker

from dsf_dist.errors import EXIT_PREEMPTED, ConfigError
from dsf_dist.hooks import checkpoint
from dsf_dist.launchers.registry import check_launch
from dsf_dist.launchers.slurm import after_checkpoint, job_to_requeue, tasks_on_each_node
from dsf_dist.run_folder import resumable, set_aside

# The SIGTERM test: held in the second epoch, after the first checkpoint. The ranks compare their flags about every
# 0.5 s of steps (hooks/preemption.py), so the planned run goes on well past that after the signal.
EPOCHS, HELD_AT_STEP = 12, 12
SRUN_TASK = {
    "SLURM_JOB_ID": "7",
    "SLURM_STEP_ID": "0",
    "SLURM_PROCID": "0",
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
}


def refusal(trainer: dict, env: dict, strategy: str = "ddp") -> str:
    with pytest.raises(ConfigError) as caught:
        check_launch(trainer, strategy, env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_srun_tasks_must_match_the_config():
    check_launch({"devices": 2, "num_nodes": 2}, "ddp", SRUN_TASK)
    assert "--set trainer.devices=2 --set trainer.num_nodes=2" in refusal({"devices": 1}, SRUN_TASK)
    assert "ddp_spawn spawns its own workers" in refusal({"devices": 2, "num_nodes": 2}, SRUN_TASK, "ddp_spawn")
    uneven = {**SRUN_TASK, "SLURM_NTASKS": "3", "SLURM_STEP_TASKS_PER_NODE": "2,1"}
    assert "unevenly" in refusal({"devices": 2, "num_nodes": 2}, uneven)
    without_per_node = {key: value for key, value in SRUN_TASK.items() if key != "SLURM_NTASKS_PER_NODE"}
    assert "--ntasks-per-node" in refusal({"devices": 2, "num_nodes": 2}, without_per_node)


def test_a_batch_shell_without_srun_is_refused_when_it_would_hang():
    shell = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    assert "without srun, so rank 0 would wait forever" in refusal({"devices": 2}, shell)
    check_launch({"devices": 1}, "auto", {**shell, "SLURM_NTASKS": "1"})  # one task: nothing to wait for
    check_launch({"devices": 2}, "ddp", {**shell, "SLURM_JOB_NAME": "interactive"})  # Lightning ignores SLURM then
    check_launch({"devices": 2}, "ddp", {})  # no launcher at all


def test_torchrun_processes_must_match_the_config():
    torchrun = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", **SRUN_TASK}
    check_launch({"devices": 2, "num_nodes": 2}, "ddp", torchrun)  # torchrun inside SLURM: torchrun decides
    assert "--set trainer.devices=2 --set trainer.num_nodes=2" in refusal({"devices": 1}, torchrun)


def test_lightning_gets_slurm_without_auto_requeue_and_torchrun_even_inside_slurm(monkeypatch):
    from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    from dsf_dist.launchers.registry import cluster_environment

    for key in [key for key in os.environ if key.startswith(("SLURM_", "TORCHELASTIC_"))]:
        monkeypatch.delenv(key)
    for key, value in SRUN_TASK.items():
        monkeypatch.setenv(key, value)
    [slurm] = cluster_environment()
    assert isinstance(slurm, SLURMEnvironment) and not slurm.auto_requeue  # dsf's Preemption requeues instead
    for key, value in {"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    [torchrun] = cluster_environment()
    assert isinstance(torchrun, TorchElasticEnvironment)  # Lightning alone would pick SLURM here


def test_slurm_task_lists_and_job_ids():
    assert [tasks_on_each_node(spec) for spec in ("2(x3)", "4", "2,1", "2(x2),1")] == [2, 4, None, None]
    assert job_to_requeue({"SLURM_JOB_ID": "12"}) == "12"
    assert job_to_requeue({"SLURM_JOB_ID": "13", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "1"}) == "12_1"
    assert job_to_requeue({"SLURM_JOB_ID": "12", "SLURM_JOB_NAME": "bash"}) is None
    assert job_to_requeue({}) is None


def test_requeue_decision():
    saved = "SIGUSR1 at step 5: checkpoint saved to r/checkpoints/last.ckpt"
    assert "continue with `dsf run -c r/config.yaml --resume`" in after_checkpoint(saved, "r/config.yaml", 3, True, {})
    capped = after_checkpoint(saved, "r/config.yaml", 3, True, {"SLURM_JOB_ID": "9", "SLURM_RESTART_COUNT": "3"})
    assert "not requeued: job 9 has restarted 3 time(s) and run.max_requeues is 3" in capped
    assert capped.endswith("continue with: sbatch slurm/train.sh r/config.yaml")
    term = after_checkpoint(saved, "r/config.yaml", 3, False, {"SLURM_JOB_ID": "9"})
    assert "not requeued: SIGTERM" in term


def test_a_file_checkpoint_replaces_the_old_one_in_one_rename(tmp_path):
    target, staging = tmp_path / "last.ckpt", tmp_path / ".last.ckpt.partial"
    target.write_text("old")
    staging.write_text("new")
    checkpoint.publish(staging, target)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_folder_checkpoint_interrupted_between_renames_still_resumes(tmp_path, monkeypatch):
    target, staging = tmp_path / "last.ckpt", tmp_path / ".last.ckpt.partial"
    for folder, content in ((target, "old"), (staging, "new")):
        (folder / "checkpoint").mkdir(parents=True)
        (folder / "checkpoint" / "model_states.pt").write_text(content)
        (folder / "latest").write_text("checkpoint")
    checkpoint.publish(staging, target)
    assert (target / "checkpoint" / "model_states.pt").read_text() == "new"
    assert not set_aside(target).exists() and not staging.exists()

    (staging / "checkpoint").mkdir(parents=True)
    (staging / "checkpoint" / "model_states.pt").write_text("newer")
    calls = []

    def crash_on_second_rename(source, destination):
        calls.append(source)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the two renames")
        os.rename(source, destination)

    monkeypatch.setattr(checkpoint.os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.publish(staging, target)
    assert not target.exists()  # the one moment without last.ckpt ...
    resume = Path(resumable(target))  # ... resume takes the complete previous one, never the staging copy
    assert resume == set_aside(target) and (resume / "checkpoint" / "model_states.pt").read_text() == "new"


# The CLI's own entry point (what `python -m dsf_dist` runs), then what it had imported by the time it returned.
CLI_THEN_MODULES = """
import json, sys
from dsf_dist.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pytorch_lightning", "lightning_fabric"))
print(json.dumps({"exit_code": code, "heavy": heavy}))
"""


def test_a_finished_run_is_not_run_again(tmp_path):
    run = tmp_path / "runs" / "finished"
    (run / "results").mkdir(parents=True)
    (run / "config.yaml").write_text("run: {name: finished}\n")
    (run / "results" / "done.json").write_text(json.dumps({"exit_code": 3}))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI_THEN_MODULES,
            "run",
            "--set",
            "run.name=finished",
            "--output",
            str(tmp_path / "runs"),
        ]
        + ["--resume"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exit_code"] == 3  # the exit code the finished run recorded (a failed gate)
    assert "already finished" in done.stdout and "nothing to do" in done.stdout
    assert not (run / "checkpoints").exists()
    assert report["heavy"] == []  # no training started: torch was not even imported


@pytest.mark.slow
@pytest.mark.distributed
def test_sigterm_on_one_rank_stops_every_rank_at_one_step_and_resume_continues(tmp_path):
    """`dsf train` with ddp on 2 CPU ranks; SIGTERM reaches rank 0 only, while it is held inside a training step.
    Both ranks stop at the same step boundary with last.ckpt saved (exit 75), and `--resume` continues from that
    step to the planned end."""
    args = ["-c", str(REPO / "configs" / "ddp.yaml"), "--output", str(tmp_path / "runs")]
    args += [
        "--set",
        "run.name=stopped",
        "--set",
        f"trainer.max_epochs={EPOCHS}",
        "--set",
        "trainer.enable_progress_bar=false",
        "--set",  # the ranks agree on a stop at every step, so it lands at the next boundary whatever the load
        "run.stop_check_s=0",
        "--set",  # holds only in the first attempt, which the environment below arms
        "callbacks=[{target: 'hold_points:HoldAt'}]",
    ]
    path = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    marker, release = tmp_path / "held.json", tmp_path / "release"
    command = [sys.executable, "-m", "dsf_dist", "train", *args]
    run = tmp_path / "runs" / "stopped"
    held_env = {**env, **hold_env("train_step", marker, rank=0, step=HELD_AT_STEP, release=release)}
    with subprocess.Popen(
        command, cwd=tmp_path, env=held_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as rank0:
        try:
            # Rank 0 holds mid-step, after the first epoch's checkpoint: the signal lands inside training, and the
            # stop must wait for the step boundary.
            deadline = time.monotonic() + 120
            while read_marker(marker) is None:
                assert rank0.poll() is None and time.monotonic() < deadline, "rank 0 did not reach the held step"
                time.sleep(0.05)
            assert (run / "checkpoints" / "last.ckpt").exists()
            rank0.send_signal(signal.SIGTERM)
            release.touch()
            out, err = rank0.communicate(timeout=120)
        finally:
            if rank0.poll() is None:
                rank0.kill()
    assert rank0.returncode == EXIT_PREEMPTED, err[-2000:]
    stopped = re.search(r"dsf: stopped by SIGTERM at step (\d+): checkpoint saved to (\S+);", err)
    assert stopped, err[-2000:]
    step, saved = int(stopped.group(1)), Path(stopped.group(2))
    assert HELD_AT_STEP < step < EPOCHS * 10 and saved == run / "checkpoints" / "last.ckpt", err[-2000:]
    assert torch.load(saved, map_location="cpu", weights_only=True)["global_step"] == step
    assert not (run / "results" / "train.json").exists()  # training did not finish

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = results(run, "train")
    assert record["resumed_from"] == str(saved.relative_to(run))
    assert record["global_step"] == EPOCHS * 10  # 10 steps an epoch per rank (1,257 samples / 2 ranks / 64)
    leftovers = [path.name for path in (run / "checkpoints").iterdir() if path.name.startswith(".")]
    assert leftovers == []
    with open(run / "logs" / "metrics.csv", newline="") as handle:
        logged = [(int(row["epoch"]), int(row["step"])) for row in csv.DictReader(handle)]
    assert {epoch for epoch, _ in logged} == set(range(EPOCHS)), (step, logged)  # rows logged before the stop stay
    assert [step for _, step in logged] == sorted(step for _, step in logged)
