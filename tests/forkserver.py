"""`python -m dsf_dist ARGS` forked from a Python that has already imported torch, Lightning and the other heavy
third-party packages, instead of started from nothing: the same CLI, run the same way, without paying for those
imports again (about 6.5 s of CPU per `dsf` command on the 2-core CI machine, and the suite starts ~100 of them).

One server per pytest worker (conftest.dsf and ranks.start start it on first use). It imports the packages below,
then waits for requests on its stdin, one at a time: for each it forks a child, sends back the child's PID, waits
for it, and sends back its exit status. The child leaves the server loop and becomes `python -m dsf_dist ARGS`: its own
process group, the request's working directory, environment, stdout and stderr files, stdin from /dev/null, and
then `runpy` runs dsf_dist's `__main__` exactly as `-m` does, through the interpreter's normal exit. The ranks
Lightning launches from such a command are forked too (tests/forked_ranks.py).

dsf_dist itself is not preloaded: every dsf module is imported fresh in each child, so no state of dsf's own (a
watchdog's parent PID, a say-once flag) comes from the server. What a preloaded package read from the environment
at import time is the server's, so a server serves only requests whose environment equals the one it started with
(but for the variables named in CALL_TIME and dsf's own DSF_*, which only dsf and the tests' callbacks read, when
they run); for any other, the client starts a new server with that environment.

A refusal that must come before Lightning loads (conftest.dsf's `forbid`) is forked from a second server that has
imported only BEFORE_LIGHTNING, and runs conftest's checking script as `python -c` would.

Protocol (JSON lines): request {"argv", "cwd", "env", "stdout", "stderr"[, "code"]}; replies {"pid"}, then
{"status"}, the status as subprocess reports it (negative: killed by that signal).
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
import types
from pathlib import Path

from forked_ranks import RANK_MODULE, fork_zygote, start_as  # beside this file (tests/ is on the path)

# What `dsf run` imports from other packages, heaviest first (torchmetrics pulls in transformers and scipy).
PRELOAD = ("pytorch_lightning", "torchmetrics", "transformers", "matplotlib", "sklearn.datasets", "numpy")
# What a refusal that must come before Lightning loads may import (conftest.dsf's `forbid`): torch, and what a text
# task reads its data with. Such a refusal is forked from a server with these only, and runs conftest's script.
BEFORE_LIGHTNING = ("torch", "datasets", "transformers")
# Read when used, not when imported: a request may differ from the server's environment in these (and DSF_*).
CALL_TIME = ("PYTEST_CURRENT_TEST", "PYTEST_XDIST_TESTRUNUID")
# Signals a fresh interpreter has at their defaults; a child resets them in case a preloaded package set one.
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGHUP)
ADDED: dict[str, str] = {}  # in the server: the variables its imports set


# --- the server (this file run as a script) ---


def serve(preload: list[str]) -> dict:
    """Preload, then serve requests until stdin closes; returns (in a forked child only) the child's request."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the packages print goes to the server's log, not into the replies
    before = dict(os.environ)
    for name in preload:
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
    start_as("-c" if "code" in request else "-m", request["argv"], request["cwd"], {**ADDED, **request["env"]})
    stdin, stdout = os.open(os.devnull, os.O_RDONLY), os.open(request["stdout"], os.O_WRONLY | os.O_APPEND)
    stderr = stdout if request["stderr"] == request["stdout"] else os.open(request["stderr"], os.O_WRONLY)
    for fd, opened in ((0, stdin), (1, stdout), (2, stderr)):  # one file for both: one offset, as with STDOUT
        os.dup2(opened, fd)
    for opened in {stdin, stdout, stderr}:
        os.close(opened)


def run_code(code: str) -> None:
    """`python -c CODE`: the code as the `__main__` module (the server's own module steps aside)."""
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    exec(compile(code, "<string>", "exec"), vars(main))


if __name__ == "__main__":
    request = serve([name for name in sys.argv[1].split(",") if name] if sys.argv[1:] else list(PRELOAD))
    become(request)
    if "code" in request:
        run_code(request["code"])
        sys.exit(0)
    rank = fork_zygote()  # None here; in a rank Lightning's launcher started from this command, its request
    runpy.run_module(RANK_MODULE if rank else "dsf_dist", run_name="__main__", alter_sys=True)


# --- the client (imported by conftest and ranks) ---


def call_time(key: str) -> bool:
    return key in CALL_TIME or key.startswith("DSF_")


class ForkServer:
    """The worker's server, started on first use with the request's environment, and again whenever a request's
    environment differs from the one it started with (or after a server died). It runs one command at a time:
    while a `start`ed job runs, `idle` is false and callers start a new process instead."""

    def __init__(self, log: Path, preload: tuple[str, ...] = PRELOAD) -> None:
        self.log, self.preload = log, preload
        self.process: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.added: dict[str, str] = {}
        self.job: ForkedJob | None = None

    @property
    def idle(self) -> bool:
        return self.job is None or self.job.poll() is not None

    def run(
        self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float, code: str | None = None
    ) -> subprocess.CompletedProcess:
        """As `subprocess.run([python, -m, dsf_dist, *argv], capture_output=True, text=True, ...)` returns it;
        with `code`, as for `[python, -c, code, *argv]`."""
        command = [sys.executable, *(["-c", code] if code else ["-m", "dsf_dist"]), *argv]
        with tempfile.TemporaryDirectory(prefix="dsf-fork-") as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            job = self.start(argv, cwd, env, out, err, code)
            try:
                status = job.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.pid, signal.SIGKILL)
                job.wait(60)
                raise subprocess.TimeoutExpired(command, timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess(command, status, out.read_text(), err.read_text())

    def start(
        self, argv: list[str], cwd: Path, env: dict[str, str], stdout: Path, stderr: Path, code: str | None = None
    ) -> ForkedJob:
        """`python -m dsf_dist ARGV` as the leader of its own process group, writing into the two files (one
        file for both, like stderr=STDOUT); the handle has Popen's pid, poll, wait and returncode."""
        assert self.idle, "the fork server runs one command at a time"
        if self.process is not None and self.process.poll() is not None:
            self._note(f"the server had exited ({self.process.returncode}); a new one")
            self.process = None
        if self.process is not None and not self._same(env):
            changed = sorted(
                key for key in {*env, *self.env} if not call_time(key) and env.get(key) != self.env.get(key)
            )
            self._note(f"a new server for a changed environment: {', '.join(changed)}")
            self.stop()  # a test set a variable, or Lightning did in the worker: a server for the new environment
        if self.process is None:
            self._start(env)
        for path in {stdout, stderr}:
            path.write_text("")
        request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(stdout), "stderr": str(stderr)}
        if code is not None:
            request["code"] = code
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.job = ForkedJob(self, self._reply(60)["pid"])
        return self.job

    def _start(self, env: dict[str, str]) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__, ",".join(self.preload)], cwd=Path(__file__).parent, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, bufsize=0,
            )  # fmt: skip
        self.env = {key: value for key, value in env.items() if not call_time(key)}
        self.added = self._reply(300)["added"]

    def _note(self, line: str) -> None:
        with open(self.log, "a") as log:
            log.write(f"forkserver: {line}\n")

    def _same(self, env: dict[str, str]) -> bool:
        """Equal but for the call-time variables, and for what the server's own imports set (present or not)."""
        return all(
            env.get(key) == self.env.get(key) or (key in self.added and env.get(key) in (None, self.added[key]))
            for key in {*env, *self.env}
            if not call_time(key)
        )

    def _reply(self, timeout: float) -> dict:
        """The server's next line (read a byte at a time: nothing of a later reply is taken early)."""
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = max(0.0, deadline - time.monotonic())  # 0: only what is already there (poll)
            if not select.select([self.process.stdout], [], [], left)[0]:
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


class ForkedJob:
    """A command the server forked: what tests use of subprocess.Popen (pid, poll, wait, returncode)."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server, self.pid = server, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(TimeoutError):
                self.returncode = self.server._reply(0)["status"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self.returncode = self.server._reply(10**9 if timeout is None else timeout)["status"]
            except TimeoutError:
                raise subprocess.TimeoutExpired(f"dsf (pid {self.pid})", timeout) from None
        return self.returncode
