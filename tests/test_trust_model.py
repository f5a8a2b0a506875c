"""The README's trust model, claim by claim, through the real CLI: a model folder, a checkpoint and a results folder
are data and never run code (Hugging Face weights from safetensors only, a folder's own code only with
model.trust_remote_code, no import path taken from a checkpoint or an export); a config file is code, so
`dsf compare A B` imports nothing a run's config names while `dsf eval RUN` runs it. Each refusal: exit 2, one line,
nothing written, and a marker file that the code would create never appears."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import token_data
import torch
import yaml
from conftest import copy_run, dsf, fingerprint, sets
from payloads import BEST, Payload, strategy_run, trusted_load
from safetensors.torch import load_file

from dsf_dist.checkpoints import export
from dsf_dist.errors import ConfigError

os.environ["HF_HUB_OFFLINE"] = "1"  # inherited by the dsf subprocesses: a Hub lookup would fail the test
LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def refused_in_one_line(done: subprocess.CompletedProcess, start: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"dsf: error: {start}"), lines
    return lines[0]


def code_module(folder: Path, marker: Path, name: str = "named_code") -> str:
    """A module that, once imported, has run: it creates `marker`. Its import path for a config."""
    (folder / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n\n\ndef factory(**kwargs):\n    raise SystemExit(9)\n"
    )
    return f"{name}:factory"


# -- Hugging Face folders ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    """A token-classification run folder (config.yaml only: `dsf eval` needs no training) beside its data and model."""
    root = tmp_path_factory.mktemp("trust-tokens")
    token_data.write_sentences(root / "train.jsonl", 40, seed=0)
    token_data.save_base_model(root / "base")
    token_data.save_existing_model(root / "existing", LABELS)
    config = {
        "model": {"task": "token_classification", "pretrained": str(root / "base")},
        "data": {"dataset": "tokens", "path": str(root / "train.jsonl"), "batch_size": 16},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
        "existing_model": {"kind": "pretrained", "path": str(root / "existing")},
    }
    (root / "run").mkdir()
    (root / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.mark.slow
def test_a_hugging_face_folder_with_only_pytorch_model_bin_is_refused_with_how_to_convert(tokens, tmp_path):
    marker = tmp_path / "pwned"
    pickled = shutil.copytree(tokens / "existing", tmp_path / "pickled")
    weights = load_file(pickled / "model.safetensors")
    (pickled / "model.safetensors").unlink()
    torch.save({**weights, "dsf_test_payload": Payload(marker)}, pickled / "pytorch_model.bin")
    before = fingerprint(tokens) | fingerprint(tmp_path)
    done = dsf("eval", str(tokens / "run"), *sets(f"existing_model.path={pickled}"), cwd=tmp_path)
    line = refused_in_one_line(done, f"existing_model.path: {pickled} holds its weights only in pytorch_model.bin")
    assert "safetensors only" in line and f".save_pretrained('{pickled}')" in line
    assert not marker.exists() and fingerprint(tokens) | fingerprint(tmp_path) == before
    # model.pretrained, the model to fine-tune, is held to the same rule.
    from dsf_dist.tasks.token_classification.model import fresh_head

    with pytest.raises(ConfigError, match=r"^model\.pretrained: .* holds its weights only in pytorch_model\.bin"):
        fresh_head(str(pickled), LABELS)
    assert not marker.exists()


@pytest.mark.slow
def test_a_folders_own_code_runs_only_when_the_config_sets_trust_remote_code(tokens, tmp_path):
    marker = tmp_path / "pwned"
    remote = shutil.copytree(tokens / "existing", tmp_path / "remote")
    config = json.loads((remote / "config.json").read_text())
    config["model_type"] = "dsf-remote"  # no built-in class: only the folder's own code can load it
    config["auto_map"] = {"AutoConfig": "configuration_remote.RemoteConfig"}
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "configuration_remote.py").write_text(
        f"import pathlib\n\nfrom transformers import BertConfig\n\npathlib.Path({str(marker)!r}).touch()\n\n\n"
        "class RemoteConfig(BertConfig):\n    model_type = 'dsf-remote'\n"
    )
    before = fingerprint(tokens) | fingerprint(tmp_path)
    done = dsf("eval", str(tokens / "run"), *sets(f"existing_model.path={remote}"), cwd=tmp_path)
    line = refused_in_one_line(done, f"existing_model.path: '{remote}' needs its own Python code to load")
    assert "model.trust_remote_code: true" in line
    assert not marker.exists() and fingerprint(tokens) | fingerprint(tmp_path) == before
    # The code is live, and model.trust_remote_code is what reaches transformers: set, the folder's code runs.
    probe = (
        "import sys; from dsf_dist.tasks.token_classification.model import output_columns; "
        f"output_columns({str(remote)!r}, {LABELS!r}, trust_remote_code=True)"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120)
    assert marker.exists()


# -- dsf checkpoints and exports: no import path taken from them -------------------------------------------------
@pytest.mark.slow
@pytest.mark.distributed
def test_a_checkpoint_or_an_export_never_chooses_code_to_import(trained_run, tmp_path, monkeypatch):
    """The existing model's own architecture comes from a checkpoint's hyper-parameters or an export's config.yaml;
    one that names an import path not in the user's config is refused instead of imported."""
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # where the named module could be imported from
    marker = tmp_path / "pwned"
    named = code_module(tmp_path, marker)
    run = copy_run(strategy_run(trained_run, "ddp"), tmp_path)
    checkpoint = run / "checkpoints" / "last.ckpt"
    contents = trusted_load(checkpoint)
    contents["hyper_parameters"]["model_config"]["network"] = named
    torch.save(contents, checkpoint)  # tensors, dicts and strings only: it passes the vetting
    exported = tmp_path / "exported"
    recipe = yaml.safe_load((run / "config.yaml").read_text())
    recipe["model"]["network"] = named
    export(run / "checkpoints" / BEST, exported, yaml.safe_dump(recipe))
    before = fingerprint(tmp_path)
    for kind, path, where in (
        ("checkpoint", checkpoint, checkpoint),
        ("pretrained", exported, exported / "config.yaml"),
    ):
        done = dsf("eval", str(run), *sets(f"existing_model.kind={kind}", f"existing_model.path={path}"), cwd=tmp_path)
        line = refused_in_one_line(done, f"existing_model.path: {where}: names model.network '{named}'")
        assert "set model.network: named_code:factory in your own config" in line
    assert not marker.exists() and fingerprint(tmp_path) == before


# -- results folders: dsf compare A B imports nothing; dsf eval RUN runs the run's config ------------------------
@pytest.mark.slow
@pytest.mark.distributed
def test_compare_imports_nothing_a_results_folder_names_while_eval_runs_the_config(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    marker = tmp_path / "pwned"
    named = code_module(tmp_path, marker)
    candidate = copy_run(strategy_run(trained_run, "ddp"), tmp_path)
    done = dsf("test", str(candidate), *sets("strategy.name=auto", "trainer.devices=1"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    baseline = shutil.copytree(candidate / "results", tmp_path / "baseline-results")  # a bare results folder
    recipe = yaml.safe_load((candidate / "config.yaml").read_text())
    recipe["model"]["network"] = named
    recipe["data"]["dataset"] = named
    recipe["existing_model"] = {"kind": "callable", "target": named}
    recipe["callbacks"] = [{"target": named, "kwargs": {}}]
    (candidate / "config.yaml").write_text(yaml.safe_dump(recipe))
    done = dsf("compare", str(candidate), str(baseline), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (candidate / "results" / "compare-baseline-results" / "comparison.json").is_file()
    assert not marker.exists()  # the run's config was read as data: nothing it names was imported
    # A config file is code: `dsf eval RUN` runs the run's config, and the module it names is imported.
    dsf("eval", str(candidate), cwd=tmp_path)
    assert marker.exists()
