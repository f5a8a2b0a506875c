"""Shared helpers: run the real `dsf` CLI in a subprocess, with a timeout so a hang fails the test; and the
session's trained runs, each trained once and shared by every test that only reads it.

`trained_run(name, *args)` trains `dsf <verb> --output ... --set run.name=<name> <args>` once per session and
returns the run folder (with `named=False`, run.name is left unset and the run is named as dsf names it, in an
output folder of its own). Tests read, test, export or compare it; a test that changes a run (resumes it, poisons
a file, moves it) works on `copy_run(folder, tmp_path)`. At the end of the session every shared run is checked
against the fingerprint it had when training finished, so a test that wrote into one fails the session.

Under pytest-xdist the shared runs live in one folder for all workers, and a file lock per run makes the first
worker that asks train it while the others wait for it: a run is still trained once per session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock
from forkserver import BEFORE_LIGHTNING, ForkServer

REPO = Path(__file__).resolve().parents[1]
WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... under xdist; None in a plain run

# The venv's tools first on PATH for every process the tests start: `ray` (tests/ray_head.py), hadolint, and what
# a test's own processes find by name.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
if WORKER is not None:
    # Two workers on a 2-core machine: one thread per process, so that 2 workers x 2 ranks do not oversubscribe
    # the cores into timeouts (Lightning itself sets 1 thread per rank only for the ranks it launches).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# Every `dsf` command of this process is forked from one server that has imported Lightning once
# (tests/forkserver.py); a refusal that must come before Lightning (forbid) from one that has imported only what
# such a refusal may (but for one that must come before torch too: a new process). DSF_TEST_FORK=0 starts each
# as a new process.
FORKING = os.environ.get("DSF_TEST_FORK") != "0"
FORK_LOG = Path(tempfile.gettempdir()) / f"dsf-forkserver-{WORKER or 'main'}-{os.getpid()}.log"
FORK_SERVER = ForkServer(FORK_LOG) if FORKING else None
REFUSAL_SERVER = ForkServer(FORK_LOG, preload=BEFORE_LIGHTNING) if FORKING else None

# The CLI as `python -m dsf_dist` runs it, then exit 99 if it imported one of the packages named in argv[1].
FORBIDDING = """
import sys
from dsf_dist import cli
forbidden = sys.argv.pop(1).split(",")
code = cli.main(sys.argv[1:])
sys.exit(99 if any(module.split(".")[0] in forbidden for module in sys.modules) else code)
"""


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a `dsf` command, plus `extra`: unbuffered output, and tests/ on the path,
    so configs can name tests/user_project.py as a user's own project."""
    path = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **(extra or {})}


def dsf(
    *args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None, forbid: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """`python -m dsf_dist ARGS` in `cwd`, forked from FORK_SERVER (a new process while the server runs a job that
    ranks.start started); `env` adds to this process's environment.
    With `forbid` (top-level package names), a process that exits 99 instead of its own code had it imported any
    of them: a refusal that must come before torch or Lightning loads (forked from REFUSAL_SERVER when nothing it
    has imported is forbidden)."""
    env = command_env(env)
    if not forbid and FORK_SERVER is not None and FORK_SERVER.idle:  # forked from a Python with Lightning imported
        return FORK_SERVER.run(list(args), cwd, env, timeout)
    if forbid and REFUSAL_SERVER is not None and not {name.split(".")[0] for name in BEFORE_LIGHTNING} & {*forbid}:
        return REFUSAL_SERVER.run([",".join(forbid), *args], cwd, env, timeout, code=FORBIDDING)
    command = ["-c", FORBIDDING, ",".join(forbid)] if forbid else ["-m", "dsf_dist"]
    return subprocess.run(
        [sys.executable, *command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def sets(*items: str) -> list[str]:
    """--set arguments for each KEY=VALUE."""
    return [arg for item in items for arg in ("--set", item)]


def only_run_folder(output: Path) -> Path:
    runs = [path for path in output.iterdir() if path.is_dir() and not path.name.startswith(".")]  # .cache: datasets
    assert len(runs) == 1, f"expected one run folder, found {runs}"
    return runs[0]


def results(run: Path, name: str) -> dict:
    return json.loads((run / "results" / f"{name}.json").read_text())


def copy_run(run: Path, into: Path) -> Path:
    """A private copy of a run folder (same name) under `into`, for a test that changes it."""
    copy = into / run.name
    shutil.copytree(run, copy, symlinks=True)
    return copy


def fingerprint(folder: Path) -> dict[str, list[int]]:
    return {
        str(path.relative_to(folder)): [path.stat().st_size, path.stat().st_mtime_ns]
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class TrainedRuns:
    """Runs trained once per session, keyed by their arguments. Each has a record beside it (`.<name>.json`: the
    arguments, the run folder, the command's stdout and the fingerprint), which is what every worker reads."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(
        self, name: str, *args: str, verb: str = "run", timeout: float = 600, named: bool = True, exit_code: int = 0
    ) -> Path:
        """The run folder; `exit_code` is the status the command must end with (75: a run stopped on purpose)."""
        key = [verb, name, *args, f"named={named}", f"exit={exit_code}"]
        record_path = self.root / f".{name}.json"
        with FileLock(self.root / f".{name}.lock"):
            if not record_path.exists():
                record = self._train(key, name, args, verb, timeout, named, exit_code)
                record_path.write_text(json.dumps(record))
        record = json.loads(record_path.read_text())
        assert record["key"] == key, f"two shared runs named {name}: {record['key']} and {key}"
        assert "error" not in record, f"shared run {name} failed:\n{record.get('error')}"
        return Path(record["run"])

    def _train(
        self, key: list[str], name: str, args: tuple[str, ...], verb: str, timeout: float, named: bool, exit_code: int
    ) -> dict:
        output = self.root if named else self.root / name
        command = [verb, "--output", str(output), *(sets(f"run.name={name}") if named else []), *args]
        done = dsf(*command, cwd=self.root, timeout=timeout)
        if done.returncode != exit_code:
            return {"key": key, "error": f"exit {done.returncode}, not {exit_code}:\n{done.stderr[-3000:]}"}
        run = self.root / name if named else only_run_folder(output)
        printed = {"stdout": done.stdout, "stderr": done.stderr[-20000:]}
        return {"key": key, "run": str(run), **printed, "fingerprint": fingerprint(run)}

    def stdout(self, run: Path) -> str:
        """What the `dsf` command that trained `run` printed."""
        return self._record(run)["stdout"]

    def stderr(self, run: Path) -> str:
        """The end of what that command wrote to stderr (its last 20,000 characters)."""
        return self._record(run)["stderr"]

    def _record(self, run: Path) -> dict:
        return next(record for record in self.records() if record["run"] == str(run))

    def records(self) -> list[dict]:
        found = [json.loads(path.read_text()) for path in self.root.glob(".*.json")]
        return [record for record in found if "run" in record]

    def check_untouched(self) -> None:
        changed = [r["run"] for r in self.records() if fingerprint(Path(r["run"])) != r["fingerprint"]]
        assert not changed, f"a test wrote into a shared run (use copy_run): {changed}"


class SharedRayHead:
    """One real Ray head on loopback (tests/ray_head.py) for every Ray test of a session, started by the first
    and stopped after the last (pytest_runtest_teardown below): a head takes about 17 s to start, and an idle one
    keeps about 6 % of this machine busy, so neither one per module nor one for the whole session."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self._head = None

    def __getattr__(self, name: str):  # the running RayHead's job, job_info, job_logs, address, ...
        if self._head is None:
            from ray_head import running_head

            self._stack = contextlib.ExitStack()
            self._head = self._stack.enter_context(running_head())
        return getattr(self._head, name)

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self._head = None


RAY_HEAD = SharedRayHead()


@pytest.fixture(scope="session")
def head() -> SharedRayHead:
    """The session's Ray head (see SharedRayHead); its tests share one xdist group, so they run on one worker,
    one after another."""
    return RAY_HEAD


@pytest.hookimpl(trylast=True)  # after the item's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if "head" in item.fixturenames and (nextitem is None or "head" not in nextitem.fixturenames):
        RAY_HEAD.stop()


def pytest_sessionfinish() -> None:
    RAY_HEAD.stop()
    for server in (FORK_SERVER, REFUSAL_SERVER):
        if server is not None:
            server.stop()


GROUPS_LONGEST_FIRST = ["ray_head", "test_causal_lm_runs", "test_slurm_cluster", "test_loggers", "test_hf", "test_disk"]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`, the tests that use a module- or session-scoped fixture of a test file (a loopback
    SLURM cluster, a module's own run) go to one worker, so the fixture is set up once; so do the Ray tests, for
    the session's one head. The session's shared runs need no group: every worker reads the same ones."""
    for item in items:
        owners = {
            definition.func.__module__
            for definitions in item._fixtureinfo.name2fixturedefs.values()
            for definition in definitions
            if definition.scope in ("module", "session") and definition.func.__module__.startswith("test_")
        }
        if "head" in item.fixturenames:
            owners = {"ray_head"}  # the session's one Ray head, whatever else the test uses (see SharedRayHead)
        for owner in sorted(owners):
            item.add_marker(pytest.mark.xdist_group(owner))
    # xdist hands out the groups largest first (--loadscope-reorder, its default), then single tests in collection
    # order: the slow ones first here, so that the last tests handed out are short and no worker idles at the end.
    first = {name: rank for rank, name in enumerate(GROUPS_LONGEST_FIRST)}

    def order(item: pytest.Item) -> tuple[int, int]:
        groups = [first.get(mark.args[0], len(first)) for mark in item.iter_markers("xdist_group")]
        return min(groups, default=len(first) + 1), 0 if item.get_closest_marker("slow") else 1

    items.sort(key=order)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Callable[..., Path]:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base folder sits in the session's own one: share the runs there.
    root = (base.parent if WORKER is not None else base) / "shared-runs"
    root.mkdir(exist_ok=True)
    runs = TrainedRuns(root)
    yield runs
    runs.check_untouched()


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return tmp_path / "runs"
