"""The fork server (tests/forkserver.py) that conftest.dsf runs every `dsf` command through behaves as a new
`python -m dsf_dist` process would: the same exit code, stdout and stderr; the request's working directory,
environment and import path; `__main__` as `-m` sets it (Lightning's launcher re-runs it for the other ranks);
files written after the server started are importable; a timeout ends the command's whole process group; a refusal
forked from the server for refusals exits 99 as a new process does when it imported a forbidden package. The rank
Lightning launches from a forked command (tests/forked_ranks.py) is the command's child and trains as a new
process does, to the same weights bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FORBIDDING, FORK_SERVER, REPO, command_env, dsf, sets
from forked_ranks import RANK_NAME
from ranks import cmdline, finish, name, other_ranks, start, wait_for
from shared_runs import assert_same_tensors

pytestmark = pytest.mark.skipif(FORK_SERVER is None, reason="DSF_TEST_FORK=0: no fork server in this run")

PROBE = """
import json, os, sys, time
main = sys.modules["__main__"]
json.dump({
    "pid": os.getpid(), "cwd": os.getcwd(), "path0": sys.path[0], "argv0": sys.argv[0],
    "main": main.__spec__.name, "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
}, open("probe.json", "w"))
time.sleep(600)


class Probe:  # what dsf checks for before it imports the module
    pass
"""


def new_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dsf_dist", *args]
    return subprocess.run(command, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args",
    [
        ("config", "--set", "trainer.max_epochs=2"),  # stdout, exit 0
        ("config", "--set", "trainer.max_epoch=2"),  # a one-line error on stderr, exit 2
        ("config", "-c", "missing.yaml"),  # a path relative to the working directory
        ("frobnicate",),  # argparse's own error and usage
    ],
)
def test_a_forked_command_prints_and_exits_as_a_new_process(tmp_path, args):
    forked, fresh = dsf(*args, cwd=tmp_path), new_process(*args, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


@pytest.mark.parametrize("forbid, code", [(("yaml",), 99), (("pytorch_lightning",), 0)])  # `config` prints YAML
def test_a_forked_refusal_tells_a_forbidden_import_as_a_new_process(tmp_path, forbid, code):
    forked = dsf("config", cwd=tmp_path, forbid=forbid)
    command = [sys.executable, "-c", FORBIDDING, ",".join(forbid), "config"]
    fresh = subprocess.run(command, cwd=tmp_path, env=command_env(), capture_output=True, text=True, timeout=120)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.returncode == code


@pytest.mark.slow  # waits out a 15-s timeout
def test_a_forked_command_runs_where_and_as_asked_and_a_timeout_ends_its_group(tmp_path, request):
    (tmp_path / "probe.py").write_text(PROBE)  # written after the server started: found all the same
    args = ["run", "--output", "runs", "--set", "data.datamodule=probe:Probe", "--set", "existing_model.kind=none"]
    with pytest.raises(subprocess.TimeoutExpired):
        dsf(*args, cwd=tmp_path, timeout=15)
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["cwd"] == probe["path0"] == str(tmp_path)
    assert probe["argv0"] == str(REPO / "dsf_dist" / "__main__.py") and probe["main"] == "dsf_dist.__main__"
    assert request.node.name in probe["test"]
    assert not Path(f"/proc/{probe['pid']}").exists()  # killed with its group, and reaped by the server


@pytest.mark.distributed
def test_a_rank_forked_from_a_forked_command_trains_as_a_new_process(tmp_path):
    short = ["strategy.name=ddp", "trainer.devices=2", "trainer.max_epochs=1", "trainer.limit_train_batches=4"]
    args = ["run", *sets("run.name=r", "existing_model.kind=none", "trainer.enable_progress_bar=false", *short)]
    weights, kinds = {}, {}
    for kind, fork_ranks in (("forked", "1"), ("new", "0")):
        folder = tmp_path / kind
        folder.mkdir()
        job = start(*args, cwd=folder, log=folder / "log.txt", env={"DSF_TEST_FORK_RANKS": fork_ranks})
        rank = wait_for(lambda: other_ranks(job.pid), 120, "rank 1 to start", job)[0]  # noqa: B023
        kinds[kind] = (name(rank), "dsf_dist.__main__" in cmdline(rank))
        assert finish(job, 240) == 0, (folder / "log.txt").read_text()[-3000:]
        last = torch.load(folder / "runs/r/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
        weights[kind] = last["state_dict"]
    assert kinds == {"forked": (RANK_NAME, False), "new": (b"python", True)}
    assert_same_tensors(weights["forked"], weights["new"])
