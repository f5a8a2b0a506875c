"""Poisoned inputs: a checkpoint carrying a pickle payload is refused without running it; truncated checkpoints of
every format, written by real runs, give one line each; a SLURM job and a restarted Ray worker refuse a poisoned
checkpoint; hostile strings reach dsf through slurm/train.sh on a real SLURM cluster as data; the Ray entry point
refuses hostile names before it contacts Ray. tests/test_vetting.py has each file kind and the other entry paths."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, dsf, fingerprint, sets
from payloads import BEST, WEIGHT_KEYS, Payload, plant_in_torch_file, stopped_copy, strategy_run, truncate
from slurm_cluster import running_cluster

from dsf_dist.checkpoints import DamagedCheckpoint, UnsafeCheckpoint, check_resumable, export, load_weights
from dsf_dist.config import load_config
from dsf_dist.config.loader import apply_override
from dsf_dist.run_folder import RunFolder

WEIGHTS = {"network.0.weight": torch.arange(12.0).reshape(3, 4), "network.0.bias": torch.zeros(3)}
HOSTILE = ["$(touch {m})", "`touch {m}`", "x; touch {m}", "a' ; touch {m} ; '", 'q" ; touch {m} ; "', "l\ntouch {m}"]
SCRIPT = str(REPO / "slurm" / "train.sh")
ONE_TASK = ("--ntasks-per-node=1", "--cpus-per-task=1")
STATES = "checkpoint/zero_pp_rank_{}_mp_rank_00_{}_states.pt"


def poisoned(tmp_path: Path) -> tuple[Path, Path]:
    marker, path = tmp_path / "pwned", tmp_path / "poisoned.ckpt"
    torch.save({"state_dict": WEIGHTS, "hyper_parameters": Payload(marker)}, path)
    return path, marker


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    path, marker = poisoned(tmp_path)
    with pytest.raises(UnsafeCheckpoint) as refused:
        load_weights(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: refused:") and refused.value.exit_code == 2
    assert "GLOBAL posix.system" in message and "weights-only" in message
    assert not marker.exists()


def test_resuming_from_a_poisoned_last_checkpoint_is_refused(tmp_path):
    cfg = load_config(overrides=["run.name=r", f"run.output_root={tmp_path}", "run.resume=auto"])
    run = RunFolder(tmp_path / "r")
    run.create(cfg)
    path, marker = poisoned(tmp_path)
    run.checkpoints.mkdir()
    shutil.copy(path, run.checkpoints / "last.ckpt")
    before = fingerprint(run.root)
    with pytest.raises(UnsafeCheckpoint, match="last.ckpt: refused: the checkpoint holds Python objects"):
        run.prepare(cfg, write=True)
    assert not marker.exists() and fingerprint(run.root) == before  # config.yaml not rewritten either


# -- truncated checkpoints of real runs: whole first, then torn ------------------------------------------------
TRUNCATED = {  # case: (the run, the file torn, relative to its last.ckpt; "" the file itself)
    "lightning_file": ("ddp", ""),
    "safetensors_file": ("ddp", "model.safetensors"),  # `export` of that run's last.ckpt
    "distcp_folder": ("fsdp", "__0_0.distcp"),
    "zero2_folder": ("deepspeed2", STATES.format(0, "optim")),
    "deepspeed_folder": ("deepspeed3", STATES.format(1, "model")),
}
KINDS = {"lightning_file": "lightning", "safetensors_file": "safetensors", "distcp_folder": "distcp"}


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("case", list(TRUNCATED))
def test_a_truncated_checkpoint_is_one_line(trained_run, tmp_path, case):
    name, part = TRUNCATED[case]
    source = strategy_run(trained_run, name) / "checkpoints" / "last.ckpt"
    checkpoint = tmp_path / "last.ckpt"
    if case == "safetensors_file":
        checkpoint = export(source, tmp_path / "export", "exported by the test\n")
        part = ""
    elif source.is_dir():
        shutil.copytree(source, checkpoint)
    else:
        shutil.copy2(source, checkpoint)
    assert set(load_weights(checkpoint)) == WEIGHT_KEYS  # whole, it loads
    torn = truncate(checkpoint / part if part else checkpoint)
    expected = f"{torn}: cannot read this {KINDS.get(case, 'deepspeed')} checkpoint, it is truncated or damaged ("
    for read in (load_weights, check_resumable):
        with pytest.raises(DamagedCheckpoint) as refused:
            read(checkpoint)
        message = str(refused.value)
        assert "\n" not in message and message.startswith(expected) and refused.value.exit_code == 2, message


@pytest.mark.slow
@pytest.mark.distributed
def test_the_cli_refuses_poison_in_one_line_without_a_traceback(trained_run, tmp_path):
    """`dsf export --checkpoint` of a real run's poisoned and truncated checkpoints: exit 2, one line each."""
    run = stopped_copy(trained_run, "ddp", tmp_path)
    marker = tmp_path / "pwned"
    bad = plant_in_torch_file(run / "checkpoints" / "last.ckpt", marker)
    torn = truncate(run / "checkpoints" / BEST)
    before = fingerprint(tmp_path)
    for checkpoint, words in ((bad, "refused: the checkpoint holds Python objects"), (torn, "truncated or damaged")):
        done = dsf("export", str(run), "--checkpoint", str(checkpoint), cwd=tmp_path, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"dsf: error: {checkpoint}: ") and words in lines[0], lines
    assert not marker.exists() and fingerprint(tmp_path) == before and not (run / "export").exists()


# -- SLURM: a real loopback cluster (tests/slurm_cluster.py) --------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    with running_cluster(nodes=1) as loopback:
        yield loopback


def job_env() -> dict[str, str]:
    """What a user's shell holds at sbatch time: the venv's python first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "DSF_PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"}


@pytest.mark.slurm
@pytest.mark.slow
def test_hostile_strings_reach_dsf_as_data(cluster, tmp_path):
    """slurm/train.sh submitted with sbatch, hostile strings in the config's path and in --set values: srun starts
    dsf, which reads the config at that path and records each value exactly as it parses the intact argument."""
    hostile = [template.format(m="pwned") for template in HOSTILE]
    config = tmp_path / f"cfg{''.join(hostile)}.yaml"
    quick = {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1, "enable_progress_bar": False}
    recipe = {"trainer": quick, "run": {"name": "hostile", "output_root": "runs"}, "existing_model": {"kind": "none"}}
    config.write_text(json.dumps({**recipe, "throughput": {"enabled": False}}))
    overrides = [f"existing_model.kwargs.n{i}={json.dumps(text)}" for i, text in enumerate(hostile)]  # YAML strings
    job = cluster.sbatch(*ONE_TASK, SCRIPT, str(config), *sets(*overrides), cwd=tmp_path, env=job_env())
    final = cluster.wait_done(job, timeout=180)
    log = (tmp_path / f"dsf-{job}.out").read_text()
    assert (final["JobState"], final["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    expected: dict = {}
    for item in overrides:
        apply_override(expected, item)  # how dsf parses each argument when it arrives whole
    recorded = load_config(tmp_path / "runs" / "hostile" / "config.yaml")  # dsf read the config at its hostile path
    assert recorded.existing_model.kwargs == expected["existing_model"]["kwargs"]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.distributed
def test_a_slurm_job_refuses_a_poisoned_checkpoint_before_resuming(cluster, trained_run, tmp_path):
    """train.sh runs `dsf run --resume` at every start of a job, its first and each requeued restart alike: a run
    folder whose last.ckpt holds a payload ends the job with one line, exit 2, the folder as it was."""
    run = stopped_copy(trained_run, "ddp", tmp_path)
    marker = tmp_path / "pwned"
    bad = plant_in_torch_file(run / "checkpoints" / "last.ckpt", marker)
    before = fingerprint(run)
    argv = (SCRIPT, str(run / "config.yaml"), *sets(f"run.output_root={tmp_path}", "trainer.enable_progress_bar=false"))
    job = cluster.sbatch(*ONE_TASK, *argv, cwd=tmp_path, env=job_env())
    final = cluster.wait_done(job, timeout=180)
    log = (tmp_path / f"dsf-{job}.out").read_text()
    assert (final["JobState"], final["ExitCode"]) == ("FAILED", "2:0"), log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("dsf: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"dsf: error: {bad}: refused:"), log[-3000:]
    assert "GLOBAL posix.system" in errors[0] and f"train.sh: job {job}, restart 0:" in log
    assert not marker.exists() and fingerprint(run) == before


# -- Ray --------------------------------------------------------------------------------------------------------
PROBE = (
    "import json, sys\n"
    "from dsf_dist.launchers.ray import main\n"
    "code = main(sys.argv[1:])\n"
    "print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] == 'ray')))\n"
    "sys.exit(code)\n"
)


def test_hostile_names_and_paths_at_the_ray_entry_point(tmp_path):
    """The Ray entry point takes its arguments as argv (no shell in dsf); names that would leave the run folder or
    carry shell syntax are refused before Ray is contacted: `ray` is never imported (connect() imports it), and
    nothing connects to the cluster address the driver is given."""
    marker = tmp_path / "pwned"
    cases = [
        ("run.name", "../escape"),
        ("ray.name", "/abs/olute"),
        ("run.name", f"$(touch {marker})"),
        ("ray.name", "x;y"),
    ]
    with socket.socket() as cluster_address:
        cluster_address.bind(("127.0.0.1", 0))
        cluster_address.listen()
        cluster_address.setblocking(False)
        address = f"127.0.0.1:{cluster_address.getsockname()[1]}"
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": address}
        for key, name in cases:
            done = subprocess.run(
                [sys.executable, "-c", PROBE, "--set", f"{key}={name}"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1 and key in lines[0], done.stderr
            assert json.loads(done.stdout) == [], done.stdout  # no Ray module was imported
        with pytest.raises(BlockingIOError):
            cluster_address.accept()  # and nothing connected to the address
    assert not marker.exists() and sorted(os.listdir(tmp_path)) == []


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_worker_restarting_from_a_poisoned_reported_checkpoint_refuses_it(head, tmp_path):
    """A real Ray job (tests/ray_head.py): epoch 0's checkpoint is reported, passes the vetting, and is then poisoned
    in the storage (tests/ray_poison.py); the workers fail, Ray restarts them from that checkpoint, and each refuses
    it before Lightning reads it: the job fails with one line naming the file, and the payload never runs."""
    marker, job = tmp_path / "pwned", "dsf-ray-poisoned"
    quick = ("trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    network = (
        "model.network=tests.ray_poison:mlp_poisoning_its_checkpoint",
        f"model.network_kwargs={{marker: {marker}, at_step: 3}}",
    )
    command = ["python", "-m", "dsf_dist.launchers.ray", "-c", "configs/ray.yaml"]
    command += sets(f"ray.storage_path={tmp_path}", *quick, *network, "existing_model.kind=none")
    done = head.job("submit", "--working-dir", str(REPO), "--submission-id", job, "--", *command, timeout=420)
    status, logs = head.job_info(job)["status"], head.job_logs(job)
    assert status == "FAILED", f"{done.stdout[-2000:]}{logs[-4000:]}"
    checkpoint = tmp_path / f"digits-{job}" / "ray-epoch000-step000002" / "checkpoint.ckpt"
    assert f"ray_poison: {checkpoint} passed the vetting whole as a lightning checkpoint" in logs, logs[-4000:]
    assert f"ray_poison: planted a payload in {checkpoint}" in logs and "[FailurePolicy] RETRY" in logs
    errors = [line for line in logs.splitlines() if line.startswith("dsf: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"dsf: error: {checkpoint}: refused:"), logs[-4000:]
    assert "GLOBAL posix.system" in errors[0] and "Traceback" not in errors[0]
    assert not marker.exists() and not (tmp_path / f"digits-{job}" / "results" / "train.json").exists()
