"""Start `dsf` in its own process group, find its ranks by PID, and SIGKILL them at chosen points.

Under Lightning's `ddp` launcher rank zero is the process `dsf` started and the other ranks are its children
(`python -m dsf_dist ...` re-run with the run's config, or forked as that: tests/forked_ranks.py); helper processes
are told apart by their command line, or the forked ranks' name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import FORK_SERVER, command_env
from forked_ranks import RANK_NAME
from forkserver import ForkedJob


def start(*args: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen | ForkedJob:
    """`python -m dsf_dist ARGS` as the leader of a new process group, stdout and stderr into `log`; `env` adds
    to this process's environment. Forked from conftest's FORK_SERVER when it is free (the handle then has what
    tests use of Popen: pid, poll, wait, returncode)."""
    env = command_env(env)
    if FORK_SERVER is not None and FORK_SERVER.idle:
        return FORK_SERVER.start(list(args), cwd, env, stdout=log, stderr=log)
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dsf_dist", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def name(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes().strip()
    except OSError:
        return b""


def other_ranks(leader: int) -> list[int]:
    """PIDs of the ranks rank zero (`leader`) launched."""
    return [pid for pid in children(leader) if "dsf_dist" in cmdline(pid) or name(pid) == RANK_NAME]


def in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group: what a killed job may have left behind."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(stat.parent.name))
    return alive


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, job: subprocess.Popen | None = None, poll: float = 0.01
) -> object:
    """Poll until `condition()` is true; fail at the timeout, or at once if `job` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if job is not None and job.poll() is not None:
            raise AssertionError(f"the job ended (exit {job.returncode}) before {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_group(job: subprocess.Popen) -> None:
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    wait_for(lambda: not in_group(job.pid), 30, "the killed process group to be gone")


def finish(job: subprocess.Popen, timeout: float) -> int:
    """Wait for the job; on a hang end its whole group (the test then fails on the return code)."""
    try:
        return job.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(job)
        return -9
