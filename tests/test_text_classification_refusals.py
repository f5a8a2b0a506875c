"""Bad input to a sequence-classification run, each through the real `dsf run`: exit 2, one line naming the file or
key and the fix, and no run folder written. Every case is refused before Lightning loads, so before a model trains."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import text_data
import yaml
from conftest import dsf, sets

os.environ["HF_HUB_OFFLINE"] = "1"
TFIDF = "dsf_dist.tasks.sequence_classification.baseline:tfidf_logistic_regression"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    import torch

    root = tmp_path_factory.mktemp("refusals")
    text_data.write_jsonl(root / "train.jsonl", 60, seed=0)
    (root / "no_label.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in text_data.rows(9, 0)))
    (root / "no_text.jsonl").write_text("".join(json.dumps({"label": r["label"]}) + "\n" for r in text_data.rows(9, 0)))
    (root / "empty.csv").write_text("")
    text_data.write_csv(root / "unseen.csv", 6, seed=1)
    (root / "unseen.csv").write_text((root / "unseen.csv").read_text() + "set a timer for ten minutes,timer\n")
    text_data.save_base_model(root / "base")
    text_data.save_classifier(root / "other_labels", ["negative", "neutral", "positive"])
    pickled = text_data.save_base_model(root / "pickled")  # its weights only as a pickle
    (pickled / "model.safetensors").unlink()
    torch.save({}, pickled / "pytorch_model.bin")
    remote = text_data.save_base_model(root / "remote")
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "modeling_mine.MyModel"}}))
    small = text_data.save_base_model(root / "small_vocab")  # a tokenizer bigger than the model's vocabulary
    config = json.loads((small / "config.json").read_text())
    (small / "config.json").write_text(json.dumps({**config, "vocab_size": 50}))
    base_config = {
        "model": {"task": "sequence_classification", "pretrained": "base"},
        "data": {"path": "train.jsonl", "batch_size": 8},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1},
        "existing_model": {"kind": "callable", "target": TFIDF},
    }
    (root / "seq.yaml").write_text(yaml.safe_dump(base_config))
    return root


CASES = {
    "missing label column": (
        ["data.path=no_label.jsonl"],
        ["no_label.jsonl", "'label'", "data.label_field"],
    ),
    "missing text column": (["data.path=no_text.jsonl"], ["no_text.jsonl", "'text'", "data.text_field"]),
    "empty file": (
        ["data.test_path=empty.csv", "data.split.train=0.85", "data.split.test=0"],
        ["empty.csv", "is empty"],
    ),
    "test label unseen in training": (
        ["data.test_path=unseen.csv", "data.split.train=0.85", "data.split.test=0"],
        ["unseen.csv row 7", "'timer'", "add examples of it to data.path"],
    ),
    "a head with another label set": (
        ["model.pretrained=other_labels"],
        ["model.pretrained", "other_labels", "['negative', 'neutral', 'positive']", "model.new_head: true"],
    ),
    "pytorch_model.bin only": (["model.pretrained=pickled"], ["model.pretrained", "pytorch_model.bin", "safetensors"]),
    "trust_remote_code not named": (["model.pretrained=remote"], ["model.pretrained", "auto_map", "trust_remote_code"]),
    "a tokenizer the model does not match": (["model.pretrained=small_vocab"], ["small_vocab", "50 embeddings"]),
    "the digits baseline": (
        ["existing_model.target=dsf_dist.models.baselines:logistic_regression"],
        ["existing_model.target", "tfidf_logistic_regression"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_no_run_folder(project, case):
    overrides, expected = CASES[case]
    args = ["run", "-c", "seq.yaml", "--output", "runs", *sets(*overrides)]
    done = dsf(*args, cwd=project, timeout=120, forbid=("pytorch_lightning",))
    assert done.returncode == 2, done.stderr[-2000:]  # 99: refused only once Lightning had loaded
    assert done.stderr.count("\n") == 1, done.stderr
    for part in expected:
        assert part in done.stderr, (part, done.stderr)
    # runs/.cache holds what datasets read; no run folder beside it
    assert [path.name for path in (project / "runs").glob("*")] in ([], [".cache"])


def test_an_existing_model_with_another_label_set_is_refused(project):
    """The same check, before the run folder (check_before_fit), without a process of its own."""
    from dsf_dist.errors import ConfigError
    from dsf_dist.tasks.sequence_classification.folders import existing_columns

    with pytest.raises(ConfigError, match=r"existing_model.path: .*other_labels has a head for labels \['negative'"):
        existing_columns(str(project / "other_labels"), text_data.LABELS, trust_remote_code=False)
    assert existing_columns(str(project / "other_labels"), ["positive", "negative", "neutral"], False) == [2, 0, 1]
