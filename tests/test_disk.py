"""Disk full and read-only output: a checkpoint that cannot be written ends the run with one line, exit 1, and
leaves the previous checkpoint byte for byte (and no torn staging copy).

The run folder lies on a real 16 MB tmpfs (the tests run as root, as CI does, so `mount` works; chmod would not
stop root): filling it gives the kernel's own ENOSPC, and a read-only bind mount of checkpoints/ its EROFS."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from conftest import dsf

pytestmark = pytest.mark.slow  # three real runs

FREE_AFTER_FILL = 96 * 1024  # room for config.yaml and the metrics rows, not for a 230 kB checkpoint


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    assert done.returncode == 0, f"mount {' '.join(args)} failed (these tests need root, as CI has): {done.stderr}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished 1-epoch run on its own tmpfs: (working folder, run folder, last.ckpt's digest)."""
    work = tmp_path_factory.mktemp("disk")
    disk = work / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk))
    try:
        done = dsf(
            "train",
            "--output",
            str(disk),
            *("--set", "run.name=d", "--set", "trainer.max_epochs=1", "--set", "trainer.enable_progress_bar=false"),
            cwd=work,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        run = disk / "d"
        yield work, run, digest(run / "checkpoints" / "last.ckpt")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def resume(work: Path, run: Path) -> subprocess.CompletedProcess:
    return dsf("train", "-c", str(run / "config.yaml"), "--resume", "--set", "trainer.max_epochs=2", cwd=work)


def assert_refused_and_kept(done: subprocess.CompletedProcess, run: Path, before: str, reason: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.startswith("dsf:")]
    assert done.returncode == 1, done.stderr[-3000:]
    assert len(lines) == 1 and "cannot write the checkpoint" in lines[0] and reason in lines[0], done.stderr[-3000:]
    assert "previous checkpoints are kept" in lines[0] and "Traceback" not in done.stderr
    assert digest(run / "checkpoints" / "last.ckpt") == before
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_a_full_disk_keeps_the_previous_checkpoint(trained):
    work, run, before = trained
    filler = run.parent / "filler"
    stats = os.statvfs(run)
    with open(filler, "wb") as handle:
        handle.write(b"\0" * (stats.f_bavail * stats.f_frsize - FREE_AFTER_FILL))
    try:
        assert_refused_and_kept(resume(work, run), run, before, "No space left on device")
    finally:
        filler.unlink()


def test_a_read_only_checkpoint_folder_keeps_the_previous_checkpoint(trained):
    work, run, before = trained
    folder = str(run / "checkpoints")
    mount("--bind", folder, folder)
    try:
        mount("-o", "remount,bind,ro", folder)
        assert_refused_and_kept(resume(work, run), run, before, "Read-only file system")
    finally:
        subprocess.run(["umount", folder], check=False)
