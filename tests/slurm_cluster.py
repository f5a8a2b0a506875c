"""A real SLURM cluster on loopback: munged (as user munge), slurmctld, and one slurmd per node, each in the
foreground (-D) in its own process session, configured under one scratch folder (FACTS.md has what works).

Several nodes share this host: each slurmd has its own name (-N), port, spool, pid and log (%n), and the node
line comes from `slurmd -C` with SlurmdParameters=config_overrides. Every daemon binds to 127.0.0.1. Stopping
cancels the jobs, waits for them to leave, then ends each daemon by the PID it was started with.

Used by tests/test_slurm_cluster.py and benchmarks/slurm_timings.py; `python tests/slurm_cluster.py` starts one
and waits for Ctrl-C, for poking at it by hand.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PACKAGES = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client"}
INSTALL = "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge (bash .ci/run does)"


class ClusterError(RuntimeError):
    """The cluster could not be brought up; the message says why."""


def missing_packages() -> list[str]:
    return sorted({package for tool, package in PACKAGES.items() if shutil.which(tool) is None})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackCluster:
    def __init__(self, nodes: int = 2, gpus: int = 2, partition: str = "debug") -> None:
        self.nodes = [f"n{i}" for i in range(1, nodes + 1)]
        self.gpus = gpus
        self.partition = partition
        self.root: Path | None = None
        self.daemons: list[tuple[str, subprocess.Popen]] = []

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> LoopbackCluster:
        missing = missing_packages()
        if missing:
            raise ClusterError(f"Debian packages missing: {', '.join(missing)}; {INSTALL}")
        # munged checks every folder on the way to its socket and key: a root-only pytest tmp folder fails that.
        self.root = Path(tempfile.mkdtemp(prefix="dsf-slurm-"))
        self.root.chmod(0o755)
        for folder in ("state", "log", "spool"):
            (self.root / folder).mkdir()
        try:
            self._start_munge()
            self._write_config()
            self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
            for node in self.nodes:
                self._spawn(f"slurmd-{node}", ["slurmd", "-D", "-N", node, "-f", str(self.conf)])
            self._wait_idle(timeout)
        except BaseException:
            self.stop(keep_files=True)  # the error names the logs under self.root
            raise
        return self

    def stop(self, keep_files: bool = False) -> None:
        """Cancel every job, wait for them to leave, then TERM each daemon by PID (slurmd first), KILL if it lingers;
        then remove the scratch folder."""
        if any(name == "slurmctld" for name, _ in self.daemons):
            self.client("scancel", f"--partition={self.partition}", check=False)
            deadline = time.monotonic() + 60
            while self.jobs() and time.monotonic() < deadline:
                time.sleep(0.2)
        order = [d for d in self.daemons if d[0].startswith("slurmd")] + [
            d for d in self.daemons if not d[0].startswith("slurmd")
        ]
        for _, process in order:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)
        self.daemons = []
        if self.root is not None and not keep_files:
            shutil.rmtree(self.root, ignore_errors=True)

    def _start_munge(self) -> None:
        munge = self.root / "munge"
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        user = pwd.getpwnam("munge")
        for path in (munge, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        # munged refuses to run as root ("PRNG seed dir is insecure"): run it as munge.
        command = ["setpriv", "--reuid=munge", "--regid=munge", "--clear-groups", "munged", "--foreground"]
        command += [f"--socket={self.munge_socket}", f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}"]
        command += [f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"]
        self._spawn("munged", command)
        self._until(lambda: self.munge_socket.exists(), 10, "munged did not create its socket")

    def _write_config(self) -> None:
        hardware = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
        line = next((text for text in hardware.splitlines() if text.startswith("NodeName=")), None)
        if line is None:
            raise ClusterError(f"`slurmd -C` printed no NodeName line: {hardware!r}")
        fields = dict(item.split("=", 1) for item in line.split()[1:])
        # The nodes share this host's memory; a RealMemory above the real one makes a node INVAL.
        fields["RealMemory"] = str(int(fields.get("RealMemory", "2048")) // len(self.nodes))
        hardware_fields = " ".join(f"{key}={value}" for key, value in fields.items())
        r = self.root
        lines = [
            "ClusterName=dsftest",
            f"SlurmctldHost={socket.gethostname()}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket},cred_expire=10",  # a requeued job restarts in ~12 s, not ~150 s
            "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",  # every daemon binds to 127.0.0.1
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd-%n.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "JobRequeue=1",
            "ReturnToService=2",
            "SchedulerParameters=bf_interval=1,sched_interval=2",
            "SlurmdParameters=config_overrides",
            "DebugFlags=NO_CONF_HASH",  # the nodes' configs differ by their %n paths only
        ]
        gres = []
        for node in self.nodes:
            devices = self._fake_gpus(node)
            if devices:
                gres.append(f"NodeName={node} Name=gpu File={devices}")
            node_gres = f"Gres=gpu:{self.gpus} " if devices else ""
            lines.append(
                f"NodeName={node} NodeAddr=127.0.0.1 Port={free_port()} {hardware_fields} {node_gres}State=UNKNOWN"
            )
        if gres:
            lines.append("GresTypes=gpu")
        lines.append(
            f"PartitionName={self.partition} Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP"
        )
        self.conf.write_text("\n".join(lines) + "\n")
        (self.root / "gres.conf").write_text("\n".join(gres) + "\n")

    def _fake_gpus(self, node: str) -> str | None:
        """Character devices like /dev/null stand in for GPUs, so scripts that ask --gpus-per-node can be tested
        (a gres without File= makes the node INVAL)."""
        folder = self.root / "gpus"
        folder.mkdir(exist_ok=True)
        try:
            for index in range(self.gpus):
                os.mknod(folder / f"{node}-gpu{index}", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:  # no CAP_MKNOD (some containers): a cluster without GPUs, self.gpus says so
            self.gpus = 0
        return f"{folder}/{node}-gpu[0-{self.gpus - 1}]" if self.gpus else None

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.root / "log" / f"{name}.out", "w") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.daemons.append((name, process))

    def _wait_idle(self, timeout: float) -> None:
        def idle() -> bool:
            self._check_daemons()
            out = self.client("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout
            states = dict(line.split() for line in out.splitlines() if line.strip())
            return all(states.get(node) == "idle" for node in self.nodes)

        self._until(idle, timeout, "the nodes did not become idle")

    def _check_daemons(self) -> None:
        for name, process in self.daemons:
            if process.poll() is not None:
                raise ClusterError(f"{name} exited with {process.returncode}; see {self.root}/log/{name}.out")

    def _until(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} within {timeout:.0f} s; logs under {self.root}/log")
            time.sleep(0.1)

    # -- clients --------------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def client(self, *command: str, check: bool = True, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.env, **kwargs)
        if check and done.returncode != 0:
            raise ClusterError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def sbatch(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
        """Submit; the job id. The job inherits `env` (default: this process's), with SLURM_CONF."""
        done = subprocess.run(
            [shutil.which("sbatch"), "--parsable", *args],  # found on this PATH, whatever PATH the job gets
            capture_output=True,
            text=True,
            timeout=30,
            cwd=cwd,
            env={**(env or os.environ), "SLURM_CONF": str(self.conf)},
        )
        if done.returncode != 0:
            raise ClusterError(f"sbatch {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def jobs(self) -> list[str]:
        out = self.client("squeue", "-h", "-o", "%i", check=False).stdout
        return out.split()

    def state(self, job: str) -> str | None:
        """The job's state while squeue lists it (PENDING, RUNNING, COMPLETING...), None once it has left."""
        out = self.client("squeue", "-h", "-j", job, "-t", "all", "-o", "%T", check=False).stdout.strip()
        return out or None

    def details(self, job: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, ExitCode, Restarts, ...), while slurmctld remembers the job."""
        out = self.client("scontrol", "show", "job", "-o", job, check=False).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait_for(self, job: str, states: set[str], timeout: float, poll: float = 0.2) -> str:
        """Poll until the job reaches one of `states` (FACTS.md: sbatch --wait polls at 2, 10, 42 s)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.details(job).get("JobState")
            if state in states:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} is {state}, not {sorted(states)}, after {timeout:.0f} s")
            time.sleep(poll)

    def wait_done(self, job: str, timeout: float) -> dict[str, str]:
        """Until the job has ended for good (not requeued); its final `scontrol show job` fields."""
        self.wait_for(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}, timeout)
        return self.details(job)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # `kill PID` stops the cluster cleanly
    cluster = LoopbackCluster().start()
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


@contextmanager
def running_cluster(nodes: int) -> Iterator[LoopbackCluster]:
    """A started loopback cluster for a fixture; the test fails, naming what is missing, when it cannot start."""
    import pytest

    if missing_packages():
        pytest.fail(f"SLURM tests need Debian's packages {', '.join(missing_packages())}: apt-get install them")
    loopback = LoopbackCluster(nodes=nodes)
    try:
        loopback.start()
    except ClusterError as err:
        pytest.fail(f"loopback SLURM cluster did not start: {err}")
    try:
        yield loopback
    finally:
        loopback.stop()
