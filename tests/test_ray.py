"""`ray job submit` of `python -m dsf_dist.launchers.ray` against a real Ray head on loopback (tests/ray_head.py):
a run that succeeds, the same run with one worker killed mid-training (Ray restarts the worker group from the
last reported checkpoint and the run ends with the same results), sharded strategies on CPU workers, and a bad
config that fails the job with one line.

The head serves the whole session; every job has its own storage folder. A missing `ray` fails these tests:
`make setup` installs the ray extra, so a skip would hide a broken setup.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, results
from ray_head import RayHead

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = "configs/ray.yaml"  # 2 workers, DDP on CPU
SHORT = ("--set", "trainer.max_epochs=2")  # 10 steps per epoch per rank (1,257 samples / 2 ranks / batch 64)
KILLED_AT_STEP = 15  # in the second (last) epoch, after the first epoch's checkpoint was reported
JOB_TIMEOUT = 420
RESTART_BOUND_S = 120  # from the kill to the restarted group's first training step


def submit(head: RayHead, job: str, storage: Path, *args: str) -> tuple[str, str]:
    """Submit the launcher as a Ray job and wait for it; its final status and its whole log."""
    command = ("python", "-m", "dsf_dist.launchers.ray", "-c", CONFIG, "--set", f"ray.storage_path={storage}", *args)
    done = head.job("submit", "--working-dir", str(REPO), "--submission-id", job, "--", *command, timeout=JOB_TIMEOUT)
    status = head.job_info(job)["status"]
    logs = head.job_logs(job)
    assert status in ("SUCCEEDED", "FAILED"), f"job {job} ended {status}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return status, logs


def reports(logs: str) -> list[tuple[int, str | None]]:
    """Rank zero's `ray.train.report` calls, in order: (report number, checkpoint folder or None)."""
    found = []
    for line in logs.splitlines():
        match = re.search(r"Reporting training result (\d+): TrainingReport\(checkpoint=(\S+?)[,)].*from rank 0", line)
        if match:
            folder = re.search(r"path=(\S+?)\)", line)
            found.append((int(match.group(1)), folder.group(1) if folder else None))
    return found


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def uninterrupted(head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("ray-storage")
    status, logs = submit(head, "dsf-ray-plain", storage, *SHORT)
    assert status == "SUCCEEDED", logs[-4000:]
    return storage / "digits-dsf-ray-plain"  # the run folder: <ray.storage_path>/<dataset>-<submission id>


def test_job_runs_the_whole_pipeline_into_the_storage_path(head: RayHead, uninterrupted: Path):
    run = uninterrupted
    for name in ("train", "test", "eval", "done"):
        assert (run / "results" / f"{name}.json").is_file(), name
    assert (run / "results" / "comparison.json").is_file() and (run / "results" / "comparison.html").is_file()
    assert results(run, "done") == {"exit_code": 0}
    train = results(run, "train")
    assert train["global_step"] == 20 and train["resumed_from"] is None
    assert (run / train["best_checkpoint"]).parent == run / "checkpoints"
    assert results(run, "test")["num_samples"] == 269  # every test sample once, on 2 ranks
    recorded = (run / "config.yaml").read_text()
    assert f"output_root: {run.parent}" in recorded and "name: digits-dsf-ray-plain" in recorded
    # Ray Train's run folder is the same folder: one report per epoch, the newest kept (ray.num_to_keep: 1).
    snapshot = json.loads((run / "checkpoint_manager_snapshot.json").read_text())
    assert snapshot["latest_checkpoint_result"]["checkpoint_dir_name"] == "ray-epoch001-step000020"
    assert sorted(p.name for p in run.glob("ray-epoch*")) == ["ray-epoch001-step000020"]
    assert (run / "ray-epoch001-step000020" / "checkpoint.ckpt").is_file()


def test_a_killed_worker_restarts_from_the_reported_checkpoint_with_the_same_results(
    head: RayHead, uninterrupted: Path, tmp_path: Path
):
    fault = (
        "--set",
        "model.network=tests.ray_faults:mlp_killing_a_rank",
        "--set",
        f"model.network_kwargs={{kill_rank: 1, kill_at_step: {KILLED_AT_STEP}}}",
    )
    status, logs = submit(head, "dsf-ray-killed", tmp_path, *SHORT, *fault)
    assert status == "SUCCEEDED", logs[-4000:]
    run = tmp_path / "digits-dsf-ray-killed"
    assert "ray_faults: killing rank 1 (pid" in logs and "[FailurePolicy] RETRY" in logs
    killed = float(re.search(r"ray_faults: killing rank 1 .* at unix time ([\d.]+)", logs)[1])
    resumed = min(float(at) for at in re.findall(r"ray_faults: rank \d resumed training at unix time ([\d.]+)", logs))
    print(f"Ray: training ran again {resumed - killed:.1f} s after rank 1 was killed (ray.max_failures=1)")
    assert 0 < resumed - killed < RESTART_BOUND_S, logs[-4000:]
    assert "Started training worker group of size 2" in logs and logs.count("Attempting to start training") == 2
    # Epoch 0 was reported and committed before the kill; the restarted group reported epoch 1 only.
    first = run / "ray-epoch000-step000010"
    assert [number for number, _ in reports(logs)] == [1, 2]
    assert results(run, "train")["resumed_from"] == str((first / "checkpoint.ckpt").relative_to(run))
    assert results(run, "train")["global_step"] == 20 and results(run, "done") == {"exit_code": 0}
    # The restart resumed weights, optimizer, data order and RNG state: the same run as uninterrupted.
    for name in ("test", "eval"):
        plain, resumed = results(uninterrupted, name), results(run, name)
        assert {k: v for k, v in resumed.items() if k != "model"} == {k: v for k, v in plain.items() if k != "model"}
    assert rows(run / "logs" / "metrics.csv") == rows(uninterrupted / "logs" / "metrics.csv")  # every epoch once
    plain = np.load(uninterrupted / "results" / "test_predictions.npz")
    resumed = np.load(run / "results" / "test_predictions.npz")
    assert all(np.array_equal(plain[key], resumed[key]) for key in plain.files)


@pytest.mark.parametrize(
    ("strategy", "shard"),
    [("fsdp", "__1_0.distcp"), ("deepspeed", "checkpoint/zero_pp_rank_1_mp_rank_00_optim_states.pt")],
)
def test_sharded_strategies_run_on_cpu_workers(
    head: RayHead, uninterrupted: Path, tmp_path: Path, strategy: str, shard: str
):
    """dsf's CPU-capable FSDP2 and DeepSpeed (ZeRO-3 here) with Ray's environment plugin: every rank writes its
    shard of the reported checkpoint, and on 2 ranks the numbers equal DDP's (two-term sums are exact)."""
    options = ("--set", "strategy.deepspeed.stage=3") if strategy == "deepspeed" else ()
    status, logs = submit(head, f"dsf-ray-{strategy}", tmp_path, *SHORT, "--set", f"strategy.name={strategy}", *options)
    assert status == "SUCCEEDED", logs[-4000:]
    run = tmp_path / f"digits-dsf-ray-{strategy}"
    assert (run / "ray-epoch001-step000020" / "checkpoint.ckpt" / shard).is_file()
    assert results(run, "done") == {"exit_code": 0}
    test, plain = results(run, "test"), results(uninterrupted, "test")
    assert test["confusion_matrix"] == plain["confusion_matrix"] and test["accuracy"] == plain["accuracy"]


def test_a_bad_config_fails_the_job_with_one_line_before_any_worker_starts(head: RayHead, tmp_path: Path):
    status, logs = submit(head, "dsf-ray-bad", tmp_path, "--set", "strategy.name=ddp_spawn")
    assert status == "FAILED"
    errors = [line for line in logs.splitlines() if line.startswith("dsf: error:")]
    assert errors == [
        "dsf: error: strategy.name: ddp_spawn spawns its own workers, but Ray Train already starts one process per "
        "worker; use ddp (or fsdp, deepspeed) under Ray"
    ]
    assert "Traceback" not in logs and "training worker group" not in logs
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_mistake_found_in_the_workers_fails_the_job_once_with_one_line(head: RayHead, tmp_path: Path):
    """Only the built model shows that the FSDP wrap class is wrong: every worker finds it before training and
    returns it, so Ray does not retry it, and the job fails with the driver's one line."""
    wrong = ("--set", "strategy.name=fsdp", "--set", "strategy.fsdp.wrap_modules=[Conv2d]")
    status, logs = submit(head, "dsf-ray-wrong-wrap", tmp_path, *wrong)
    assert status == "FAILED"
    errors = [line for line in logs.splitlines() if line.startswith("dsf: error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "dsf: error: strategy.fsdp.wrap_modules: 'Conv2d' is not a module class in the model"
    ), logs[-3000:]
    assert logs.count("Attempting to start training worker group") == 1 and "[FailurePolicy]" not in logs
