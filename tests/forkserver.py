"""`python -m dsf_dist ARGS` forked from a Python that has already imported torch, Lightning and the other heavy
third-party packages, instead of started from nothing: the same CLI, run the same way, without paying for those
imports again (about 6.5 s of CPU per `dsf` command on the 2-core CI machine, and the suite starts ~100 of them).

One server per pytest worker (conftest.dsf starts it on first use). It imports the packages below, then waits for
requests on its stdin, one at a time: for each it forks a child, sends back the child's PID, waits for it, and
sends back its exit status. The child leaves the server loop and becomes `python -m dsf_dist ARGS`: its own
process group, the request's working directory, environment, stdout and stderr files, stdin from /dev/null, and
then `runpy` runs dsf_dist's `__main__` exactly as `-m` does, through the interpreter's normal exit.

dsf_dist itself is not preloaded: every dsf module is imported fresh in each child, so no state of dsf's own (a
watchdog's parent PID, a say-once flag) comes from the server. What a preloaded package read from the environment
at import time is the server's, so a server serves only requests whose environment equals the one it started with
(but for the variables named in CALL_TIME); for any other, the client starts a new server with that environment.

Protocol (JSON lines): request {"argv", "cwd", "env", "stdout", "stderr"}; replies {"pid"}, then {"status"}, the
status as subprocess reports it (negative: killed by that signal).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What `dsf run` imports from other packages, heaviest first (torchmetrics pulls in transformers and scipy).
PRELOAD = ("pytorch_lightning", "torchmetrics", "transformers", "matplotlib", "sklearn.datasets", "numpy")
# Read when used, not when imported: a request may differ from the server's environment in these.
CALL_TIME = ("PYTEST_CURRENT_TEST", "PYTEST_XDIST_TESTRUNUID")
# Signals a fresh interpreter has at their defaults; a child resets them in case a preloaded package set one.
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGHUP)
ADDED: dict[str, str] = {}  # in the server: the variables its imports set


# --- the server (this file run as a script) ---


def serve() -> dict:
    """Preload, then serve requests until stdin closes; returns (in a forked child only) the child's request."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the packages print goes to the server's log, not into the replies
    before = dict(os.environ)
    for name in PRELOAD:
        importlib.import_module(name)
    # What the imports set (Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK): a process that imported them has it too.
    ADDED.update({key: value for key, value in os.environ.items() if before.get(key) != value})
    # The preloaded objects live for the whole server: no child's collections (nor its exit) walk them, and so
    # none copies their pages (a fork shares them until written, and a collection writes every object it visits).
    gc.freeze()
    requests = os.fdopen(0, "rb", buffering=0)
    replies.write(json.dumps({"ready": os.getpid(), "added": ADDED}) + "\n")
    while line := requests.readline():
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            replies.close()
            return request
        replies.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
    sys.exit(0)


def become(request: dict) -> None:
    """Turn this forked child into the process `python -m dsf_dist ARGV` would start in the request's place."""
    os.setpgid(0, 0)  # its own group: a timeout ends it and the ranks it launched together
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({**ADDED, **request["env"]})
    for fd, path, mode in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY),
        (2, request["stderr"], os.O_WRONLY),
    ):
        opened = os.open(path, mode)
        os.dup2(opened, fd)
        os.close(opened)
    sys.path[0] = os.getcwd()  # as `-m` sets it
    importlib.invalidate_caches()  # files written since the server started (a user's module) are found
    sys.argv = ["-m", *request["argv"]]


if __name__ == "__main__":
    become(serve())
    runpy.run_module("dsf_dist", run_name="__main__", alter_sys=True)


# --- the client (imported by conftest) ---


class ForkServer:
    """The worker's server, started on first use with the request's environment, and again whenever a request's
    environment differs from the one it started with (or after a server died)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.added: dict[str, str] = {}

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        """As `subprocess.run([python, -m, dsf_dist, *argv], capture_output=True, text=True, ...)` returns it."""
        if self.process is not None and self.process.poll() is not None:
            self._note(f"the server had exited ({self.process.returncode}); a new one")
            self.process = None
        if self.process is not None and not self._same(env):
            changed = sorted(key for key in {*env, *self.env} - {*CALL_TIME} if env.get(key) != self.env.get(key))
            self._note(f"a new server for a changed environment: {', '.join(changed)}")
            self.stop()  # a test set a variable, or Lightning did in the worker: a server for the new environment
        if self.process is None:
            self._start(env)
        command = [sys.executable, "-m", "dsf_dist", *argv]
        with tempfile.TemporaryDirectory(prefix="dsf-fork-") as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            out.touch()
            err.touch()
            request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            pid = self._reply(60)["pid"]
            try:
                status = self._reply(timeout)["status"]
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                self._reply(60)
                raise subprocess.TimeoutExpired(command, timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess(command, status, out.read_text(), err.read_text())

    def _start(self, env: dict[str, str]) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__], cwd=Path(__file__).parent, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, bufsize=0,
            )  # fmt: skip
        self.env = {key: value for key, value in env.items() if key not in CALL_TIME}
        self.added = self._reply(300)["added"]

    def _note(self, line: str) -> None:
        with open(self.log, "a") as log:
            log.write(f"forkserver: {line}\n")

    def _same(self, env: dict[str, str]) -> bool:
        """Equal but for CALL_TIME, and for what the server's own imports set (present or not)."""
        keys = {*env, *self.env} - {*CALL_TIME}
        return all(
            env.get(key) == self.env.get(key) or (key in self.added and env.get(key) in (None, self.added[key]))
            for key in keys
        )

    def _reply(self, timeout: float) -> dict:
        """The server's next line (read a byte at a time: nothing of a later reply is taken early)."""
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                raise TimeoutError
            byte = self.process.stdout.read(1)
            if not byte:
                raise RuntimeError(f"the fork server exited (its log: {self.log})")
            line += byte
        return json.loads(line)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        self.process = None
