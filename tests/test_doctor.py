"""`dsf doctor` on this machine (no GPU), and `dsf install-trainer-packages` (its --dry-run and its refusals)."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch
from conftest import REPO, dsf

from dsf_dist.config import load_config
from dsf_dist.doctor import CUDA_TORCH, strategies


def words(table: str) -> str:
    """Rich's tables without their borders and line wrapping: the cells' words in reading order."""
    return " ".join(table.encode("ascii", "ignore").decode().split())


def test_doctor_reports_this_machine_and_the_default_config(tmp_path):
    done = dsf("doctor", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = words(done.stdout)
    assert "torch" in out and "gloo" in out and "NCCL" in out and "DeepSpeed" in out
    if torch.cuda.is_available():
        assert "GPU 0 ok" in out and "GiB" in out
    else:  # this CI machine: no GPU, and the fix
        assert "GPUs missing none" in out and "install a CUDA build of torch" in out
    assert ("SLURM client ok" in out) == bool(shutil.which("sbatch") and shutil.which("srun"))
    assert "strategy 'auto' can run here" in out


def test_a_gpu_config_cannot_run_here_and_says_how_to_fix_it(tmp_path):
    overrides = ["--set", "trainer.accelerator=gpu", "--set", "trainer.devices=64", "--set", "strategy.name=ddp"]
    done = dsf("doctor", *overrides, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    out = words(done.stdout)
    if not torch.cuda.is_available():
        assert "ddp (configured) missing 64 x GPU trainer.accelerator asks for a GPU and there is none" in out
    assert "strategy 'ddp' cannot run here" in out


def test_every_strategy_is_judged_with_the_configs_trainer():
    cpu = {row.what: row for row in strategies(load_config(overrides=["trainer.devices=2"]))}
    assert set(cpu) == {"auto", "ddp", "ddp_spawn", "fsdp", "deepspeed"}
    assert all(row.ok for row in cpu.values())  # gloo, FSDP2 and DeepSpeed's CPU accelerator: all run on CPU
    gpu = strategies(load_config(overrides=["trainer.accelerator=gpu", "trainer.devices=64"], check_machine=False))
    assert not any(row.ok for row in gpu)
    if not torch.cuda.is_available():
        assert all(CUDA_TORCH in row.fix for row in gpu)


def test_doctor_refuses_a_missing_config_in_one_line(tmp_path):
    done = dsf("doctor", "-c", "nowhere.yaml", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nowhere.yaml" in done.stderr


@pytest.mark.parametrize("extra", ["deepspeed", "ray", "hf", "loggers", "all"])
def test_install_dry_run_prints_the_pip_command_for_this_checkout(tmp_path, extra):
    done = dsf("install-trainer-packages", extra, "--dry-run", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{sys.executable} -m pip install -e '{REPO}[{extra}]'\n"


def test_install_refuses_an_unknown_extra_in_one_line(tmp_path):
    done = dsf("install-trainer-packages", "cuda", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "dsf: error: install-trainer-packages: unknown extra 'cuda'; choose one of deepspeed, ray, hf, loggers, all\n"
    )


def test_every_extra_offered_is_declared_in_pyproject():
    import tomllib

    from dsf_dist.install import EXTRAS

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(declared)
