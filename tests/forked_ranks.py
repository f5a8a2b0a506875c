"""The ranks Lightning's `ddp` launcher starts from a forked `dsf` command (tests/forkserver.py), forked too.

Lightning's launcher starts ranks 1..N-1 of a node as `python -m dsf_dist.__main__ ARGS`, each a new interpreter
that imports torch and Lightning again (about 6.5 s of CPU per rank on the CI machine). In a forked command, a
copy of the command is made before dsf runs (the "zygote": Lightning imported, no dsf module, no thread), and
the launcher's `subprocess.Popen` of that exact command line is answered by forking a rank from that copy, with
the launcher's environment and working directory, then running `dsf_dist.__main__` as `-m` does.

The rank is the command's own child, as a Popen'ed rank is: the zygote forks an intermediate process that forks
the rank and exits, and the command, a child subreaper, adopts the orphan. The command waits for it with waitpid,
the rank's parent is the command (dsf's watchdog compares its parent to the one it started with), and it stays
in the command's process group (a timeout's killpg ends it). Any other Popen the launcher makes is a real one;
DSF_TEST_FORK_RANKS=0 makes every rank a new process again.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types

# Lightning's launchers (Trainer's, Fabric's): each calls `subprocess.Popen(command, env=..., cwd=...)`.
LAUNCHERS = (
    "pytorch_lightning.strategies.launchers.subprocess_script",
    "lightning_fabric.strategies.launchers.subprocess_script",
)
RANK_MODULE = "dsf_dist.__main__"
RANK_NAME = b"dsf-rank"  # /proc/PID/comm of a forked rank (its cmdline is the server's): tests/ranks.py
PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_CHILD_SUBREAPER = 1, 15, 36
ADOPTION_S = 30.0  # how long a new rank waits to be re-parented to the command before it gives up


def prctl(option: int, value: int | bytes) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def fork_zygote() -> dict | None:
    """In the forked command, before dsf runs: make the zygote and answer the launchers' Popen from it. Returns
    None in the command, and in each rank forked later the rank's request ({"argv", "cwd", "env"})."""
    if os.environ.get("DSF_TEST_FORK_RANKS") == "0":
        return None
    command = os.getpid()
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # the orphaned rank is re-parented to this process
    requests_in, requests_out = os.pipe()
    replies_in, replies_out = os.pipe()
    if os.fork() == 0:
        os.close(requests_out)
        os.close(replies_in)
        return _zygote(requests_in, replies_out, command)
    os.close(requests_in)
    os.close(replies_out)
    popen = Launcher(requests_out, replies_in).popen
    for name in LAUNCHERS:
        launcher = importlib.import_module(name)
        launcher.subprocess = types.ModuleType("subprocess")  # the module as it is, but for Popen
        launcher.subprocess.__dict__.update({**vars(subprocess), "Popen": popen})
    return None


def _zygote(requests_fd: int, replies_fd: int, command: int) -> dict:
    """Fork a rank per request until the command closes its end; returns only in a rank."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the command was SIGKILLed: nothing more to fork
    requests = os.fdopen(requests_fd, "rb", buffering=0)
    while line := requests.readline():
        intermediate = os.fork()
        if intermediate == 0:
            rank = os.fork()
            if rank == 0:
                requests.close()
                os.close(replies_fd)
                return _adopted(json.loads(line), command)
            os.write(replies_fd, f"{rank}\n".encode())
            os._exit(0)
        os.waitpid(intermediate, 0)
    os._exit(0)


def _adopted(request: dict, command: int) -> dict:
    """In a new rank: wait to be the command's child (its intermediate parent has exited), then become the rank."""
    deadline = time.monotonic() + ADOPTION_S
    while os.getppid() != command:
        if time.monotonic() > deadline:
            os._exit(70)
        time.sleep(0.001)
    prctl(PR_SET_NAME, RANK_NAME)
    start_as("-m", request["argv"], request["cwd"], request["env"])
    return request


def start_as(flag: str, argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """Take the working directory, environment, import path and argv that `python FLAG ... ARGV` started in
    `cwd` with `env` has (FLAG: -m or -c). The server's commands and the ranks forked from them both use it."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path[0] = "" if flag == "-c" else os.getcwd()  # as `-c` and `-m` set it
    importlib.invalidate_caches()  # files written since the server started (a user's module) are found
    sys.argv = [flag, *argv]


class Launcher:
    """The command's end: Popen for the launchers, forking `python -m dsf_dist.__main__ ARGS` from the zygote."""

    def __init__(self, requests_fd: int, replies_fd: int) -> None:
        self.requests = os.fdopen(requests_fd, "wb", buffering=0)
        self.replies = os.fdopen(replies_fd, "rb", buffering=0)
        self.lock = threading.Lock()

    def popen(self, args, env=None, cwd=None, **kwargs) -> subprocess.Popen | ForkedRank:  # noqa: ANN001
        if kwargs or list(args[:3]) != [sys.executable, "-m", RANK_MODULE]:
            return subprocess.Popen(args, env=env, cwd=cwd, **kwargs)
        request = {"argv": list(args[3:]), "cwd": os.path.abspath(cwd or "."), "env": dict(env or os.environ)}
        with self.lock:
            self.requests.write((json.dumps(request) + "\n").encode())
            pid = self.replies.readline()
        if not pid:
            raise RuntimeError("the zygote that forks this command's ranks has exited (tests/forked_ranks.py)")
        return ForkedRank(list(args), int(pid))


class ForkedRank:
    """A forked rank, this process's child: what Lightning and dsf's watchdog use of Popen (pid, returncode, poll,
    wait, send_signal, terminate, kill). Threads may poll it at once, as they do a Popen."""

    def __init__(self, args: list[str], pid: int) -> None:
        self.args, self.pid = args, pid
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        if self.returncode is None and self._lock.acquire(blocking=False):
            try:
                self._reap(os.WNOHANG)
            finally:
                self._lock.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            with self._lock:
                if self.returncode is None:
                    self._reap(0)
            return self.returncode
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.005)
        return self.returncode

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped elsewhere: as Popen, the status is lost
            self.returncode = 0
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
