import subprocess
import sys

import pytest
from conftest import dsf

HELP_WITHOUT_TORCH = """
import sys
from dsf_dist import cli
try:
    cli.main(["--help"])
except SystemExit as stop:
    assert stop.code == 0, stop.code
else:
    raise AssertionError("--help returned instead of exiting")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pytorch_lightning", "lightning_fabric"))
assert not heavy, heavy
"""


def test_help_imports_no_torch():
    done = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "dsf-dist" in done.stdout and "compare" in done.stdout


def test_config_check_and_print(tmp_path):
    checked = dsf("config", "--check", cwd=tmp_path)
    assert checked.returncode == 0 and "config OK: embedded default" in checked.stdout
    printed = dsf("config", "--set", "trainer.max_epochs=2", cwd=tmp_path)
    assert "max_epochs: 2" in printed.stdout


@pytest.mark.parametrize(
    ("config_text", "args", "expected"),
    [
        ("trainer:\n  max_epoch: 3\n", (), "trainer.max_epoch: unknown key; did you mean max_epochs?"),
        ("data:\n  batch_size: many\n", (), "data.batch_size: Input should be a valid integer"),
        (None, ("-c", "missing.yaml"), "missing.yaml: config file not found"),
        (
            None,
            ("--set", "existing_model.kind=checkpoint", "--set", "existing_model.path=gone.ckpt"),
            "existing_model.path: gone.ckpt does not exist",
        ),
    ],
    ids=["unknown-key", "wrong-type", "missing-config", "missing-checkpoint"],
)
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, config_text, args, expected):
    if config_text is not None:
        (tmp_path / "bad.yaml").write_text(config_text)
        args = ("-c", "bad.yaml", *args)
    done = dsf("run", *args, "--output", "out", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsf: error: ") and expected in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


def test_existing_run_name_is_refused_before_training(tmp_path):
    (tmp_path / "out" / "taken").mkdir(parents=True)
    done = dsf("run", "--output", "out", "--set", "run.name=taken", cwd=tmp_path)
    assert done.returncode == 2 and "run folder already exists" in done.stderr
    assert list((tmp_path / "out" / "taken").iterdir()) == []


@pytest.mark.parametrize("verb", ["test", "eval", "compare"])
def test_verbs_on_a_folder_that_is_not_a_run(tmp_path, verb):
    done = dsf(verb, str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "not a dsf run folder" in done.stderr
