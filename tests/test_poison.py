"""Poisoned inputs: a checkpoint carrying a pickle payload is refused without running it; truncated checkpoints
of every format give one line; hostile strings reaching slurm/train.sh and the Ray entry point stay data."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, dsf
from safetensors.torch import save_file

from dsf_dist.checkpoints import load_weights
from dsf_dist.config import dump, load_config
from dsf_dist.errors import DsfError
from dsf_dist.run_folder import RunFolder

WEIGHTS = {"network.0.weight": torch.arange(12.0).reshape(3, 4), "network.0.bias": torch.zeros(3)}
HOSTILE = ["$(touch {m})", "`touch {m}`", "x; touch {m}", "a' ; touch {m} ; '", 'q" ; touch {m} ; "', "l\ntouch {m}"]


class Payload:
    """Unpickling this runs `touch marker`: what a malicious checkpoint would do with any command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def poisoned(tmp_path: Path) -> tuple[Path, Path]:
    marker, path = tmp_path / "pwned", tmp_path / "poisoned.ckpt"
    torch.save({"state_dict": WEIGHTS, "hyper_parameters": Payload(marker)}, path)
    return path, marker


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    path, marker = poisoned(tmp_path)
    with pytest.raises(DsfError) as refused:
        load_weights(path)
    message = str(refused.value)
    assert "\n" not in message and "GLOBAL posix.system" in message and "weights-only" in message
    assert not marker.exists()


def test_resuming_from_a_poisoned_last_checkpoint_is_refused(tmp_path):
    cfg = load_config(overrides=["run.name=r", f"run.output_root={tmp_path}", "run.resume=auto"])
    run = RunFolder(tmp_path / "r")
    run.create(cfg)
    path, marker = poisoned(tmp_path)
    run.checkpoints.mkdir()
    shutil.copy(path, run.checkpoints / "last.ckpt")
    with pytest.raises(DsfError, match="refused: the checkpoint holds Python objects"):
        run.prepare(cfg, write=True)
    assert not marker.exists()


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def lightning_file(folder: Path) -> Path:
    torch.save({"state_dict": WEIGHTS}, folder / "last.ckpt")
    return folder / "last.ckpt"


def safetensors_file(folder: Path) -> Path:
    save_file(WEIGHTS, folder / "model.safetensors")
    return folder / "model.safetensors"


def distcp_folder(folder: Path) -> Path:
    import torch.distributed.checkpoint as dcp

    dcp.save({"state_dict": WEIGHTS}, checkpoint_id=folder / "last.ckpt", no_dist=True)
    return folder / "last.ckpt"


def deepspeed_folder(folder: Path) -> Path:
    # The layout ZeRO writes (FACTS.md); the states file itself is a torch.save of the rank's partition.
    root = folder / "last.ckpt"
    (root / "checkpoint").mkdir(parents=True)
    (root / "latest").write_text("checkpoint")
    torch.save({"module": WEIGHTS}, root / "checkpoint" / "zero_pp_rank_0_mp_rank_00_model_states.pt")
    torch.save({"optimizer_state_dict": {}}, root / "checkpoint" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    return root


def largest_file(path: Path) -> Path:
    return path if path.is_file() else max((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("make", [lightning_file, safetensors_file, distcp_folder, deepspeed_folder])
def test_a_truncated_checkpoint_is_one_line(tmp_path, make):
    path = make(tmp_path)
    if make in (lightning_file, safetensors_file):  # the fabricated folders only need the layout to be recognised
        assert set(load_weights(path)) >= set(WEIGHTS)
    truncated(largest_file(path))
    with pytest.raises(DsfError) as refused:
        load_weights(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and ("truncated or damaged" in message or "refused" in message)


@pytest.mark.slow
def test_the_cli_refuses_poison_in_one_line_without_a_traceback(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump(load_config()))
    path, marker = poisoned(tmp_path)
    lightning = lightning_file(tmp_path)
    truncated(lightning)
    for checkpoint in (path, lightning):
        done = dsf("export", str(run), "--checkpoint", str(checkpoint), cwd=tmp_path, timeout=120)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"dsf: error: {checkpoint}:"), done.stderr
    assert not marker.exists() and not (run / "export").exists()
    # The existing model named by the config: its hyper-parameters are read weights-only too.
    (run / "config.yaml").write_text(
        dump(load_config(overrides=["existing_model.kind=checkpoint", f"existing_model.path={path}"]))
    )
    done = dsf("eval", str(run), cwd=tmp_path, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "refused" in lines[0], done.stderr
    assert not marker.exists()


def fake_srun(folder: Path) -> Path:
    """Stands in for srun only: records the argv train.sh built, one NUL-terminated argument each."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > {folder / "argv"}\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_hostile_strings_reach_srun_as_data(tmp_path):
    """slurm/train.sh's own quoting path, run as SLURM would run it (bash, SLURM_* set), with hostile strings in
    the config path and in --set values; srun is the one stand-in, so the argv it receives can be read back."""
    hostile = [template.format(m="pwned") for template in HOSTILE]
    config = tmp_path / f"cfg{''.join(hostile)}.yaml"
    config.write_text("trainer:\n  max_epochs: 1\n")
    overrides = [f"existing_model.kwargs.n{i}={text!r}".replace("\n", "\\n") for i, text in enumerate(hostile)]
    env = {
        **os.environ,
        "PATH": f"{fake_srun(tmp_path)}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "SLURM_JOB_ID": "7",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "1",
    }
    sets = [arg for item in overrides for arg in ("--set", item)]
    done = subprocess.run(
        ["bash", str(REPO / "slurm" / "train.sh"), str(config), *sets],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "argv").read_bytes().split(b"\0")[:-1]
    assert f"--config={config}".encode() in argv and all(item.encode() in argv for item in overrides)
    assert not (tmp_path / "pwned").exists()


def test_hostile_names_and_paths_at_the_ray_entry_point(tmp_path):
    """The Ray entry point takes its arguments as argv (no shell in dsf); names that would leave the run folder
    or carry shell syntax are refused before Ray is contacted."""
    marker = tmp_path / "pwned"
    cases = [
        ("run.name", "../escape"),
        ("ray.name", "/abs/olute"),
        ("run.name", f"$(touch {marker})"),
        ("ray.name", "x;y"),
    ]
    for key, name in cases:
        done = subprocess.run(
            [sys.executable, "-m", "dsf_dist.launchers.ray", "--set", f"{key}={name}"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and key in lines[0], done.stderr
    assert not marker.exists() and sorted(os.listdir(tmp_path)) == []
