"""Hugging Face token classification, end to end on CPU: tiny BERT models written with save_pretrained and loaded
back through from_pretrained (offline), BIO tags from JSONL, train -> test -> eval a second pretrained model ->
compare; and the same under FSDP on 2 ranks, wrapped by the transformer's block class."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import token_data
import yaml
from conftest import dsf, only_run_folder, results

from dsf_dist.errors import ConfigError
from dsf_dist.tasks.token_classification.data import encode
from dsf_dist.tasks.token_classification.entities import entities
from dsf_dist.tasks.token_classification.sentences import IGNORE, label_names, read_sentences

os.environ["HF_HUB_OFFLINE"] = "1"  # inherited by the dsf subprocesses: a Hub lookup would fail the test
LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tokens")
    token_data.write_sentences(root / "train.jsonl", 160, seed=0)
    token_data.write_sentences(root / "test.jsonl", 60, seed=1)
    token_data.save_base_model(root / "base")
    token_data.save_existing_model(root / "existing", LABELS)
    config = {
        "model": {"task": "token_classification", "pretrained": "base", "optimizer": {"name": "adamw", "lr": 0.005}},
        "data": {
            "dataset": "tokens",
            "path": "train.jsonl",
            "test_path": "test.jsonl",
            "split": {"train": 0.85, "val": 0.15, "test": 0},
            "batch_size": 16,
        },
        "trainer": {"max_epochs": 4, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
        "existing_model": {"kind": "pretrained", "path": "existing"},
    }
    (root / "tokens.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def token_run(project) -> Path:
    done = dsf("run", "-c", "tokens.yaml", "--output", "runs", cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    return only_run_folder(project / "runs")


# -- the pieces -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),
        (["B-PER", "B-PER"], {("PER", 0, 1), ("PER", 1, 2)}),  # B always starts a new entity
        (["O", "I-LOC", "I-LOC"], {("LOC", 1, 3)}),  # I after O starts one (conlleval, seqeval's default)
        (["B-PER", "I-LOC"], {("PER", 0, 1), ("LOC", 1, 2)}),  # a type change ends one and starts another
        (["PER", "PER", "O"], {("PER", 0, 2)}),  # IO tags, no prefix
        (["O", "O"], set()),
    ],
)
def test_entities_follow_the_conlleval_rules(tags, expected):
    assert entities(tags) == expected


def test_labels_come_from_the_data_in_a_fixed_order(project):
    train, test = read_sentences(project / "train.jsonl"), read_sentences(project / "test.jsonl")
    assert label_names(train, test) == LABELS
    assert label_names(test, train) == LABELS


def test_a_word_is_labelled_on_its_first_sub_token_only():
    tokenizer = token_data.tokenizer()
    sentence = {"tokens": ["carolina", "lives", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}
    item = encode([sentence], tokenizer, LABELS, max_words=6, max_length=32)[0]
    pieces = tokenizer.convert_ids_to_tokens(item["input_ids"].tolist())
    assert pieces == ["[CLS]", "car", "##olina", "lives", "in", "paris", "[SEP]"]
    assert item["labels"].tolist() == [IGNORE, 5, IGNORE, 0, 0, 1, IGNORE]
    assert item["first_sub_token"].tolist() == [1, 3, 4, 5, IGNORE, IGNORE]
    assert item["word_labels"].tolist() == [5, 0, 0, 1, IGNORE, IGNORE]


def test_a_bad_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b"], "tags": ["O"]}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: 2 tokens but 1 tags"):
        read_sentences(path)


def test_token_task_without_a_pretrained_model_is_refused_in_one_line(tmp_path):
    done = dsf("config", "--check", "--set", "model.task=token_classification", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "model.pretrained is empty" in done.stderr


# -- end to end -----------------------------------------------------------------------------------


def existing_accuracy_by_hand(project: Path) -> float:
    """The existing model scored with plain transformers: word = first sub-token, its own id2label."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(project / "existing").eval()
    tokenizer = AutoTokenizer.from_pretrained(project / "existing")
    right = total = 0
    for sentence in read_sentences(project / "test.jsonl"):
        encoding = tokenizer(sentence["tokens"], is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            predicted = model(**encoding).logits[0].argmax(-1).tolist()
        word_ids, seen = encoding.word_ids(), set()
        for position, word in enumerate(word_ids):
            if word is None or word in seen:
                continue
            seen.add(word)
            right += model.config.id2label[predicted[position]] == sentence["tags"][word]
            total += 1
    return right / total


@pytest.mark.slow
def test_trained_model_beats_a_random_pretrained_one_on_words_and_entities(token_run):
    test, existing = results(token_run, "test"), results(token_run, "eval")
    assert test["labels"] == LABELS
    assert (
        test["num_samples"]
        == existing["num_samples"]
        == sum(len(s["tokens"]) for s in read_sentences(token_run.parent.parent / "test.jsonl"))
    )
    assert test["f1"] > 0.8 and test["entity_f1"] > 0.8
    assert existing["entity_f1"] < 0.5
    report = json.loads((token_run / "results" / "comparison.json").read_text())
    assert report["classes"] == LABELS
    assert report["differences"]["entity_f1"]["trained_better"]
    entity = report["statistics"]["bootstrap"]["metrics"]["entity_f1"]
    assert entity["difference_ci"][0] > 0  # resampled by sentence
    assert any("words of 60 test sentences" in note for note in report["notes"])


@pytest.mark.slow
def test_existing_model_is_scored_like_plain_transformers_would(token_run):
    """Label ids differ between the data and the existing model (reversed order): dsf maps them by name."""
    existing = results(token_run, "eval")
    assert existing["accuracy"] == pytest.approx(
        existing_accuracy_by_hand(token_run.parent.parent), abs=1e-6
    )  # float32
    words = np.load(token_run / "results" / "eval_predictions.npz")
    assert set(words.files) == {"index", "preds", "target", "sentence"} and len(np.unique(words["sentence"])) == 60


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_on_two_ranks_wraps_the_transformer_blocks_and_tests_exactly(project, token_run):
    done = dsf(
        "run",
        "-c",
        "tokens.yaml",
        "--output",
        "fsdp-runs",
        "--set",
        "strategy.name=fsdp",
        "--set",
        "trainer.devices=2",
        "--set",
        "trainer.max_epochs=1",
        "--set",
        "run.name=fsdp",
        cwd=project,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = project / "fsdp-runs" / "fsdp"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["strategy"]["fsdp"]["wrap_modules"] == ["BertEmbeddings", "BertLayer"]  # from _no_split_modules
    assert any(run.glob("checkpoints/*/*.distcp"))  # sharded checkpoint, read back for testing
    # The existing model is the same on both runs: 2 sharded ranks must score it exactly like 1 process.
    assert results(run, "eval") == {**results(token_run, "eval")}


def test_an_existing_model_with_another_tag_set_is_refused_before_training(project, monkeypatch):
    from dsf_dist.config import load_config
    from dsf_dist.tasks.token_classification import check_existing

    monkeypatch.chdir(project)  # the config's paths are relative to where dsf runs
    cfg = load_config("tokens.yaml", ["existing_model.path=base"])
    with pytest.raises(ConfigError, match=r"'base' predicts labels \['LABEL_0', 'LABEL_1'\].*same tag set"):
        check_existing(cfg)  # Main.execute_trainer calls it before the run folder exists
