"""A real Ray head on loopback: `ray start --head --block` in its own process session, every port on 127.0.0.1
chosen free at start, its own temp folder, stopped by the PID it was started with (never `ray stop`, which would
stop every Ray on the machine).

FACTS.md has why each setting is here: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps Ray on 127.0.0.1 instead of the
machine's eth0 address; RAY_AUTH_MODE=disabled keeps a stray ~/.ray/auth_token from switching token auth on;
RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 makes the head stop in seconds, not 30. The job's `python` is the first on
the head's PATH, so this interpreter's folder goes first.

Used by tests/test_ray.py and benchmarks/ray_submit.py; `python tests/ray_head.py` starts one and waits for
Ctrl-C, for poking at it by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# Client-side settings too: every `ray` CLI call and driver talks to the head with them.
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
PORTS = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
)


class HeadError(RuntimeError):
    """The head did not come up; the message says why and where its logs are."""


def ray_cli() -> str:
    """The `ray` script beside this interpreter (the venv's), not whatever PATH finds first."""
    beside = Path(sys.executable).with_name("ray")
    if beside.is_file():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise HeadError("the `ray` command is missing; pip install 'dsf-dist[ray]' (ray[default,train])")
    return found


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1, all held open together so that none is handed out twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


class RayHead:
    def __init__(self, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.ports: dict[str, int] = {}
        self.temp_dir: Path | None = None
        self.process: subprocess.Popen | None = None
        self.log: Path | None = None

    @property
    def address(self) -> str:
        """Where `ray job submit --address` and the job SDK reach the dashboard."""
        return f"http://127.0.0.1:{self.ports['dashboard-port']}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.ports['port']}"

    def env(self) -> dict[str, str]:
        """The environment for the head and for every client of it: loopback settings, this venv first on PATH."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**os.environ, **LOOPBACK_ENV, "PATH": path}

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 90) -> RayHead:
        # Short: Ray's unix sockets live under it and their paths must stay below ~107 characters.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="dsf-ray-", dir="/tmp"))
        self.ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
        command = [
            ray_cli(),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=true",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            f"--temp-dir={self.temp_dir}",
            "--min-worker-port=0",  # 0: the OS picks each worker's port, so nothing clashes with other services
            "--max-worker-port=0",
            "--disable-usage-stats",
            *(f"--{name}={port}" for name, port in self.ports.items()),
        ]
        self.log = self.temp_dir / "head.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(keep_files=True)
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """The dashboard answers and the job agent accepts requests (GET /api/jobs/ lists jobs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HeadError(f"`ray start` exited with {self.process.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.address}/api/jobs/", timeout=2) as response:
                    json.load(response)
                    return
            except (OSError, ValueError):
                time.sleep(0.3)
        raise HeadError(f"the Ray head did not answer at {self.address} within {timeout:.0f} s; see {self.log}")

    def stop(self, keep_files: bool = False) -> None:
        """TERM the `ray start --block` process (it stops the head's processes), then KILL the session if it
        lingers; then remove the temp folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # `ray start --block` stops the processes it started
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.process is not None:
            # Whatever the head started in its session (raylet, GCS, dashboard, workers) goes with it.
            self._signal(signal.SIGKILL)
        self.process = None
        if self.temp_dir is not None and not keep_files:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # its own session (start_new_session): the head's processes
            os.killpg(self.process.pid, sig)

    # -- clients ------------------------------------------------------------------------------------
    def job(self, *args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """`ray job <args>` against this head."""
        return subprocess.run(
            [ray_cli(), "job", *args[:1], "--address", self.address, *args[1:]],
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def job_info(self, submission_id: str) -> dict:
        with urllib.request.urlopen(f"{self.address}/api/jobs/{submission_id}", timeout=10) as response:
            return json.load(response)

    def job_logs(self, submission_id: str) -> str:
        with urllib.request.urlopen(f"{self.address}/api/jobs/{submission_id}/logs", timeout=10) as response:
            return json.load(response).get("logs", "")


if __name__ == "__main__":
    head = RayHead().start()
    print(f"Ray head up: {head.address} (GCS {head.gcs_address}, temp {head.temp_dir}); Ctrl-C stops it")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        head.stop()


@contextlib.contextmanager
def running_head() -> Iterator[RayHead]:
    """A started loopback Ray head for a fixture; the test fails, naming what is missing, when it cannot start."""
    import pytest

    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.fail("the Ray tests need ray[default,train]: pip install 'dsf-dist[ray]' (make setup does)")
    loopback = RayHead()
    try:
        loopback.start()
    except HeadError as err:
        pytest.fail(f"the loopback Ray head did not start: {err}")
    try:
        yield loopback
    finally:
        loopback.stop()
