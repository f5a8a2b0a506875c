"""torchrun on one node, 2 CPU processes, end to end: launchers/torchrun.sh names the run by its --rdzv-id,
Lightning joins torchrun's ranks (TorchElasticEnvironment), the pipeline writes one complete run folder, and
the same command again finds the run finished. A config whose devices differ from torchrun's processes is
refused in one line instead of Lightning's traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, results

LAUNCHER = str(REPO / "launchers" / "torchrun.sh")


def launch(*args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return subprocess.run(
        list(args),
        cwd=cwd,
        env={**os.environ, "PATH": path, "DSF_PYTHON": sys.executable, "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_processes_end_to_end(tmp_path):
    args = [LAUNCHER, str(REPO / "configs" / "ddp.yaml"), "--set", "trainer.max_epochs=2"]
    args += ["--set", "trainer.enable_progress_bar=false"]
    done = launch(*args, cwd=tmp_path, NPROC_PER_NODE="2", RUN_ID="tr1")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "digits-tr1"  # torchrun's --rdzv-id names the run, the same on every rank
    assert "run folder: runs/digits-tr1" in done.stdout
    record = results(run, "train")
    assert record["global_step"] == 2 * 10  # 2 processes shared each epoch: 1,257 samples / 2 / batch 64
    for name in ("test", "eval", "comparison", "done"):
        assert (run / "results" / f"{name}.json").is_file(), name
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in done.stdout + done.stderr

    again = launch(*args, cwd=tmp_path, NPROC_PER_NODE="2", RUN_ID="tr1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "run folder: runs/digits-tr1 already finished" in again.stdout


def test_devices_that_differ_from_torchrun_processes_are_refused(tmp_path):
    done = launch(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "dsf_dist", "run", "-c", str(REPO / "configs" / "default.yaml"), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    refusals = [line for line in done.stderr.splitlines() if line.startswith("dsf: error:")]
    assert refusals and all(line == refusals[0] for line in refusals)
    assert "trainer.devices=1 x trainer.num_nodes=1 does not match torchrun's 2 process(es)" in refusals[0]
    assert "Traceback" not in "\n".join(line for line in done.stderr.splitlines() if "dsf_dist" in line)
    assert not (tmp_path / "runs").exists()


def test_launcher_refuses_a_missing_config_and_unsafe_run_id(tmp_path):
    missing = launch(LAUNCHER, "nope.yaml", cwd=tmp_path, timeout=30)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "torchrun.sh: error: config 'nope.yaml' not found; give the path of a YAML config",
    )
    unsafe = launch(LAUNCHER, str(REPO / "configs" / "ddp.yaml"), cwd=tmp_path, timeout=30, RUN_ID="a/../b")
    assert unsafe.returncode == 2 and "RUN_ID='a/../b' is not a safe name" in unsafe.stderr
    two_nodes = launch(LAUNCHER, str(REPO / "configs" / "ddp.yaml"), cwd=tmp_path, timeout=30, NNODES="2")
    assert two_nodes.returncode == 2 and "needs RDZV_ENDPOINT" in two_nodes.stderr
