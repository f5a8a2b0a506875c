"""Shared helpers: run the real `dsf` CLI in a subprocess, with a timeout so a hang fails the test; and the
session's trained runs, each trained once and shared by every test that only reads it.

`trained_run(name, *args)` trains `dsf <verb> --output ... --set run.name=<name> <args>` once per session and
returns the run folder. Tests read, test, export or compare it; a test that changes a run (resumes it, poisons
a file, moves it) works on `copy_run(folder, tmp_path)`. At the end of the session every shared run is checked
against the fingerprint it had when training finished, so a test that wrote into one fails the session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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


def sets(*items: str) -> list[str]:
    """--set arguments for each KEY=VALUE."""
    return [arg for item in items for arg in ("--set", item)]


def only_run_folder(output: Path) -> Path:
    runs = [path for path in output.iterdir() if path.is_dir()]
    assert len(runs) == 1, f"expected one run folder, found {runs}"
    return runs[0]


def results(run: Path, name: str) -> dict:
    return json.loads((run / "results" / f"{name}.json").read_text())


def copy_run(run: Path, into: Path) -> Path:
    """A private copy of a run folder (same name) under `into`, for a test that changes it."""
    copy = into / run.name
    shutil.copytree(run, copy, symlinks=True)
    return copy


def fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class TrainedRuns:
    """Runs trained once per session, keyed by their arguments."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[tuple[str, ...], Path] = {}
        self.prints: dict[Path, dict[str, tuple[int, int]]] = {}

    def __call__(self, name: str, *args: str, verb: str = "run", timeout: float = 600) -> Path:
        key = (verb, name, *args)
        if key not in self.runs:
            assert all(run.name != name for run in self.runs.values()), f"two shared runs named {name}"
            command = [verb, "--output", str(self.root), *sets(f"run.name={name}"), *args]
            done = dsf(*command, cwd=self.root, timeout=timeout)
            assert done.returncode == 0, f"shared run {name} failed:\n{done.stderr[-3000:]}"
            run = self.root / name
            self.runs[key], self.prints[run] = run, fingerprint(run)
        return self.runs[key]

    def check_untouched(self) -> None:
        changed = [str(run) for run, before in self.prints.items() if fingerprint(run) != before]
        assert not changed, f"a test wrote into a shared run (use copy_run): {changed}"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Callable[..., Path]:
    runs = TrainedRuns(tmp_path_factory.mktemp("shared-runs"))
    yield runs
    runs.check_untouched()


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return tmp_path / "runs"
