"""A newcomer's first hour (issue 22): every mistake gets the right one line, naming what caused it and a fix that
exists; what a config cannot run with is refused by `dsf config --check`; nothing is overwritten or left silent.

Each test calls the real CLI and checks its exit code and its line. Refusals happen before training, so most
start no training at all; the ones that train are marked slow.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, copy_run, dsf, only_run_folder, sets

# A callback of the user's own, found by import path (the test's folder is on `python -m`'s path): from step 3 on
# each step takes 50 ms, so that a signal sent when `ready` appears lands in the middle of fit.
PAUSE_MODULE = """
import time
from pathlib import Path

import pytorch_lightning as pl


class SlowSteps(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 3:
            Path("ready").write_text("")
        if trainer.global_step >= 3:
            time.sleep(0.05)
"""
SHORT_FIT = sets(
    "trainer.max_epochs=12",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "callbacks=[{target: pause:SlowSteps}]",
)


def refusal(done: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one line on stderr of a refused command."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code and len(lines) == 1 and lines[0].startswith("dsf: error: "), (
        done.returncode,
        done.stderr,
    )
    return lines[0].removeprefix("dsf: error: ")


def check(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return dsf("config", "--check", *args, cwd=cwd, timeout=60)


def fake_run(root: Path, results: dict[str, dict] | None = None) -> Path:
    """A run folder as `dsf run` leaves it, as far as the verbs read it before loading a model: config.yaml,
    results/train.json naming a best checkpoint, and the given results files."""
    run = root / "runs" / "fake"
    (run / "checkpoints").mkdir(parents=True)
    (run / "results").mkdir()
    (run / "config.yaml").write_text("trainer: {max_epochs: 1}\n")
    (run / "checkpoints" / "best.ckpt").write_text("not loaded by these tests")
    (run / "results" / "train.json").write_text(json.dumps({"best_checkpoint": "checkpoints/best.ckpt"}))
    for name, content in (results or {}).items():
        (run / "results" / f"{name}.json").write_text(json.dumps(content))
    return run


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# -- errors that name the right thing, and a fix that exists ----------------------------------------------------
def test_an_override_is_blamed_not_the_config_file(tmp_path):
    line = refusal(check("-c", str(REPO / "configs" / "default.yaml"), *sets("comparison.confidence=95"), cwd=tmp_path))
    assert line.startswith("--set comparison.confidence=95: comparison.confidence: "), line
    assert "e.g. 0.95" in line and "default.yaml" not in line
    # Without a file every value that is not a default came from a --set: the key path names it.
    line = refusal(check(*sets("comparison.confidence=95"), cwd=tmp_path))
    assert line == "comparison.confidence: 95 reads as a percentage; give the level as a fraction, e.g. 0.95"


def test_a_value_from_the_file_is_blamed_on_the_file(tmp_path):
    (tmp_path / "mine.yaml").write_text("comparison:\n  confidence: 95\n")
    line = refusal(check("-c", "mine.yaml", cwd=tmp_path))
    assert line.startswith("mine.yaml: comparison.confidence: ") and "e.g. 0.95" in line, line


def test_a_gpu_asked_for_on_a_machine_without_one(tmp_path):
    import torch

    done = check("-c", str(REPO / "configs" / "default.yaml"), *sets("trainer.accelerator=gpu"), cwd=tmp_path)
    if torch.cuda.device_count() > 0:
        assert done.returncode == 0, done.stderr
        return
    line = refusal(done)
    assert line.startswith("--set trainer.accelerator=gpu: trainer.accelerator: 'gpu' asked but this machine has no")
    assert "use trainer.accelerator=cpu" in line and "use at most 0" not in line


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        (None, ("strategy=ddp",), "strategy: 'ddp' is a value, but strategy is a section; write strategy: {name: ddp}"),
        ("strategy: ddp\n", (), "mine.yaml: strategy: 'ddp' is a value, but strategy is a section"),
        (None, ("logging.loggers=csv",), "takes a list; write logging.loggers: [csv]"),
        (
            None,
            ("comparison.no_significant_regression=accuracy",),
            "write comparison.no_significant_regression: [accuracy]",
        ),
    ],
    ids=["section-by-set", "section-in-file", "list-by-set", "gate-list"],
)
def test_a_single_value_where_a_section_or_a_list_belongs(tmp_path, config, args, expected):
    extra = []
    if config is not None:
        (tmp_path / "mine.yaml").write_text(config)
        extra = ["-c", "mine.yaml"]
    assert expected in refusal(check(*extra, *sets(*args), cwd=tmp_path))


@pytest.mark.parametrize("verb", ["test", "export"])
def test_a_missing_checkpoint_is_one_line(tmp_path, verb):
    run = fake_run(tmp_path)
    line = refusal(dsf(verb, str(run), "--checkpoint", "gone.ckpt", cwd=tmp_path, timeout=60))
    assert line == "--checkpoint gone.ckpt: not found; give a checkpoint file or folder (RUN/checkpoints/...)"


def test_export_to_a_file_is_one_line_and_writes_nothing(tmp_path):
    run = fake_run(tmp_path)
    (tmp_path / "taken").write_text("a file")
    before = files_under(tmp_path)
    line = refusal(dsf("export", str(run), "--out", "taken/export", cwd=tmp_path, timeout=60))
    assert line == "--out taken/export: taken is a file, not a folder; give a folder for the export"
    assert files_under(tmp_path) == before


def test_export_takes_no_set(tmp_path):
    run = fake_run(tmp_path)
    line = refusal(dsf("export", str(run), *sets("trainer.max_epochs=3"), cwd=tmp_path, timeout=60))
    assert line == "--set trainer.max_epochs=3: dsf export writes the run's own config.yaml, so it takes no --set"


def test_a_json_file_given_as_checkpoint_is_not_a_checkpoint(tmp_path):
    run = fake_run(tmp_path)
    (tmp_path / "results.json").write_text('{"accuracy": 0.9}')
    done = dsf("export", str(run), "--checkpoint", "results.json", cwd=tmp_path, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "not a checkpoint" in lines[0] and "Python objects" not in lines[0], lines[0]


# -- refused at `dsf config --check`, not later or never --------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("comparison.primary_metric=mse",),
            "comparison.primary_metric: 'mse' is not computed by a classification run; use one of accuracy, precision",
        ),
        (("metrics.f1=false", "comparison.primary_metric=f1"), "'f1' is not computed by a classification run; set "),
        (("model.network_kwargs.hidden_sizes=[256,",), "--set model.network_kwargs.hidden_sizes=[256,: the value is"),
        (("data.batch_size=true",), "data.batch_size: true is a boolean where a number is expected; give a number"),
        (("trainer.max_epochs=true",), "trainer.max_epochs: True is not a valid value; pl.Trainer expects int"),
        (("trainer.max_epochs=",), "--set trainer.max_epochs=: no value after '='"),
        (("trainer.devices=2",), "strategy.name: auto trains in one process, but trainer.devices is 2; set"),
        (("model.network=json:nope",), "model.network: json:nope: module 'json' defines no 'nope' at its top level"),
        (("model.module=json:Nope",), "model.module: json:Nope: module 'json' defines no 'Nope'"),
        (("data.dataset=no_such_pkg.data:load",), "data.dataset: no_such_pkg.data:load: no module 'no_such_pkg.data'"),
        (("data.datamodule=no_such_pkg:DM",), "data.datamodule: no_such_pkg:DM: no module 'no_such_pkg'"),
        (("callbacks=[{target: 'json:Nope'}]",), "callbacks.0.target: json:Nope: module 'json' defines no 'Nope'"),
        (
            ("existing_model.target=dsf_dist.models.baselines:nope",),
            "existing_model.target: dsf_dist.models.baselines:nope: module 'dsf_dist.models.baselines' defines no",
        ),
    ],
    ids=[
        "primary-not-a-task-metric",
        "primary-disabled",
        "unparsable-list",
        "bool-as-number",
        "bool-as-trainer-number",
        "empty-value",
        "auto-with-two-devices",
        "network",
        "module",
        "dataset",
        "datamodule",
        "callback",
        "existing-model",
    ],
)
def test_refused_by_config_check(tmp_path, args, expected):
    assert expected in refusal(check(*sets(*args), cwd=tmp_path))


def test_import_paths_are_checked_without_running_the_module(tmp_path):
    # Importing this module would leave a file behind and end the process.
    (tmp_path / "sideeffect.py").write_text(
        "from pathlib import Path\nPath('imported').write_text('')\nraise SystemExit(9)\n\ndef load(path):\n    ...\n"
    )
    assert check(*sets("data.dataset=sideeffect:load"), cwd=tmp_path).returncode == 0
    line = refusal(check(*sets("data.dataset=sideeffect:lod"), cwd=tmp_path))
    assert line.endswith("module 'sideeffect' defines no 'lod' at its top level; check the name after ':'"), line
    assert not (tmp_path / "imported").exists()


# -- no silence, no overwrite -----------------------------------------------------------------------------------
def test_compare_with_the_comparison_disabled_says_so_and_needs_none_of_the_runs_code(tmp_path):
    scores = {"model": "x", "num_samples": 3, "accuracy": 1.0}
    run = fake_run(tmp_path, {"test": scores, "eval": scores})
    # Copied to a machine without the run's own callback package: compare reads results, not code.
    (run / "config.yaml").write_text("callbacks: [{target: 'gone_package.callbacks:Mine'}]\n")
    before = files_under(run)
    args = ["compare", str(run), *sets("comparison.enabled=false")]
    done = dsf(*args, cwd=tmp_path, timeout=60, forbid=BEFORE_TORCH)  # exit 99 had torch or Lightning loaded
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no comparison: comparison.enabled is false (--set comparison.enabled=true compares)"
    assert files_under(run) == before


def test_compare_two_results_folders_with_the_comparison_disabled_says_so(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "test.json").write_text(json.dumps({"num_samples": 3, "accuracy": 1.0}))
        np.savez(tmp_path / name / "test_predictions.npz", index=np.arange(3), preds=np.arange(3), target=np.arange(3))
    done = dsf("compare", "a", "b", *sets("comparison.enabled=false"), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no comparison: comparison.enabled is false (--set comparison.enabled=true compares)"
    assert not (tmp_path / "a" / "compare-b").exists()


BEFORE_TORCH = ("torch", "pytorch_lightning")


@pytest.mark.parametrize("verb", ["run", "train"])
def test_a_taken_run_name_is_refused_before_torch_naming_resume(tmp_path, verb):
    (tmp_path / "out" / "taken").mkdir(parents=True)
    (tmp_path / "out" / "taken" / "config.yaml").write_text("{}\n")
    args = [verb, "--output", "out", *sets("run.name=taken")]
    line = refusal(dsf(*args, cwd=tmp_path, timeout=60, forbid=BEFORE_TORCH))  # exit 2, not 99: no torch loaded
    assert line == (
        f"out/taken: run folder already exists; continue it with `dsf {verb} -c out/taken/config.yaml --resume`, "
        "or choose another run.name or --output"
    )


# -- quiet output -----------------------------------------------------------------------------------------------
def test_doctor_starts_with_its_own_table(tmp_path):
    done = dsf("doctor", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].strip() == "this machine"
    assert "Setting accelerator" not in done.stdout + done.stderr


# -- runs that train ----------------------------------------------------------------------------------------------
def start_fit(tmp_path: Path, *args: str) -> subprocess.Popen:
    """`dsf run` in the background, returned once it is in the middle of fit."""
    (tmp_path / "pause.py").write_text(PAUSE_MODULE)
    command = [sys.executable, "-m", "dsf_dist", "run", "--output", "out", *SHORT_FIT, *args]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A terminal's Ctrl-C finds SIGINT at its default; a test started in the background inherits it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "ready").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    return process


@pytest.fixture(scope="module")
def stopped_and_resumed(tmp_path_factory):
    """A run stopped by SIGTERM in the middle of fit, then continued with the command its stop line gives."""
    root = tmp_path_factory.mktemp("stopped")
    process = start_fit(root, *sets("existing_model.kind=none", "throughput.window_steps=1000"))
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    stopped = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    found = re.search(r"continue with `(dsf run [^`]+)`", stderr)
    assert found, stderr
    command = shlex.split(found.group(1))
    resumed = dsf(*command[1:], cwd=root, timeout=240)
    return stopped, command, resumed, root


@pytest.mark.slow
def test_a_stopped_run_names_the_command_that_resumes_it(stopped_and_resumed):
    stopped, command, resumed, root = stopped_and_resumed
    assert stopped.returncode == 75, stopped.stderr
    run = only_run_folder(root / "out")
    assert command == ["dsf", "run", "-c", f"out/{run.name}/config.yaml", "--resume"]
    assert resumed.returncode == 0, resumed.stderr
    assert only_run_folder(root / "out") == run  # continued, not a new run folder


@pytest.mark.slow
def test_a_run_without_an_existing_model_says_so_and_prints_its_folder(stopped_and_resumed):
    _, _, resumed, root = stopped_and_resumed
    lines = resumed.stdout.strip().splitlines()
    run = only_run_folder(root / "out")
    assert lines[-2:] == [
        "no comparison: existing_model.kind is 'none', so there is no existing model to compare with",
        f"run folder: out/{run.name}",
    ]


@pytest.mark.slow
def test_a_run_prints_no_lightning_census_and_no_source_paths(stopped_and_resumed):
    _, _, resumed, _ = stopped_and_resumed
    output = resumed.stdout + resumed.stderr
    for noise in ("GPU available:", "TPU available:", "HPU available:", "Setting accelerator", "throughput.py"):
        assert noise not in output, noise
    assert "throughput: fewer than 1001 steps, so no window to report (throughput.window_steps is 1000)" in output


@pytest.mark.slow
def test_testing_another_checkpoint_writes_beside_the_runs_results(stopped_and_resumed, tmp_path):
    _, _, _, root = stopped_and_resumed
    run = copy_run(only_run_folder(root / "out"), tmp_path)
    (tmp_path / "pause.py").write_text(PAUSE_MODULE)  # the run's config names its callback
    before = files_under(run / "results")
    done = dsf("test", str(run), "--checkpoint", str(run / "checkpoints" / "last.ckpt"), cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"results: {run / 'results' / 'test-last.json'}"
    after = files_under(run / "results")
    assert {name: after[name] for name in before} == before  # the best checkpoint's results are untouched
    assert set(after) - set(before) == {"test-last.json", "test-last_predictions.npz"}
    assert json.loads(after["test-last.json"])["model"] == "checkpoints/last.ckpt"


@pytest.mark.slow
def test_ctrl_c_during_fit_exits_130(tmp_path):
    process = start_fit(tmp_path, *sets("existing_model.kind=none"))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "dsf: interrupted"


# -- the README true to the code --------------------------------------------------------------------------------
def section_of(annotation: object) -> type | None:
    """The config section a field holds, itself or as the items of a list (callbacks)."""
    from dsf_dist.config.base import Section

    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None


def test_the_readme_config_table_names_every_section_and_key():
    from dsf_dist.config.schema import DsfConfig

    table = (REPO / "README.md").read_text().split("\n## Config reference\n")[1].split("\n## ")[0]
    rows = {row.split("|")[1].strip(" `"): row.split("|", 2)[2] for row in table.splitlines() if row.startswith("| `")}
    missing = [section for section in DsfConfig.model_fields if section not in rows]
    for section, field in DsfConfig.model_fields.items():
        named = " ".join(re.findall(r"`([^`]+)`", rows.get(section, "")))
        keys = section_of(field.annotation).model_fields if section_of(field.annotation) else {}
        missing += [f"{section}.{key}" for key in keys if section in rows and not re.search(rf"\b{key}\b", named)]
    assert not missing, f"README's config table does not name: {missing}"
