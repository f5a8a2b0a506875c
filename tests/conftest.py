"""Shared helpers: run the real `dsf` CLI in a subprocess, with a timeout so a hang fails the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dsf(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    # tests/ on the path, so configs can name tests/user_project.py as a user's own project.
    path = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "dsf_dist", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_folder(output: Path) -> Path:
    runs = [path for path in output.iterdir() if path.is_dir()]
    assert len(runs) == 1, f"expected one run folder, found {runs}"
    return runs[0]


def results(run: Path, name: str) -> dict:
    return json.loads((run / "results" / f"{name}.json").read_text())


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return tmp_path / "runs"
