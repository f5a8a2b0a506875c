"""The causal LM task's pieces, in one process and without training: text files read through datasets (and their
one-line refusals), whole-document splits, block packing that makes every token a target once, next-token
scoring, the Kneser-Ney baseline, the report's statistics and gates, and every bad input refused in one line
(exit 2) before a run folder exists."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import causal_lm_data as lm
import numpy as np
import pytest
import torch
from conftest import sets

from dsf_dist import cli
from dsf_dist.config import load_config
from dsf_dist.data.text import read_text
from dsf_dist.errors import ConfigError
from dsf_dist.scoring.predictions import Predictions
from dsf_dist.tasks.causal_lm import ngram, scoring
from dsf_dist.tasks.causal_lm.blocks import IGNORE, pack
from dsf_dist.tasks.causal_lm.corpus import documents
from dsf_dist.tasks.causal_lm.model import next_token_predictions

os.environ["HF_HUB_OFFLINE"] = "1"  # a Hub lookup would fail the test


def refusal(call) -> str:
    with pytest.raises(ConfigError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- text files -----------------------------------------------------------------------------------------------
def test_jsonl_txt_and_parquet_become_datasets_with_the_named_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = lm.documents(3)
    jsonl = read_text(lm.write_jsonl(tmp_path / "d.jsonl", rows), ("body",), ("title",), cache=tmp_path / "c")
    assert jsonl.column_names == ["body", "title"] and jsonl["title"] == [row["title"] for row in rows]
    (tmp_path / "d.txt").write_text("first paragraph\nstill first\n\nsecond\n")
    assert read_text(tmp_path / "d.txt", cache=tmp_path / "c")["text"] == ["first paragraph\nstill first", "second\n"]
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), tmp_path / "d.parquet")
    parquet = read_text(tmp_path / "d.parquet", extra=("label",), cache=tmp_path / "c")
    assert parquet["label"] == [0, 1] and parquet["text"] == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.jsonl", None, r"data.path: .*missing.jsonl does not exist; give a .txt, .jsonl or .parquet file"),
        ("empty.jsonl", "\n  \n", r"data.path: .*empty.jsonl is empty; give a file with at least one document"),
        ("empty.txt", "", r"data.path: .*empty.txt is empty"),
        (
            "field.jsonl",
            '{"body": "a"}\n\n{"title": "x"}\n',
            r"field.jsonl:3: no 'body' field \(the line has: title\); add it, or set data.text_field",
        ),
        ("nowhere.jsonl", '{"title": "x"}\n', r"no row has a 'body' field \(fields: title\); set data.text_field"),
        ("bad.jsonl", '{"body": "a"}\n{"body": "b"\n', r"bad.jsonl:2: not a JSON object .*one JSON object per line"),
        ("number.jsonl", '{"body": 3}\n', r"'body' holds int64, not text; set data.text_field to a text field"),
        ("notes.xlsx", "body\nx\n", r"is not a .txt, .jsonl, .csv or .parquet file"),
    ],
)
def test_bad_text_files_are_refused_in_one_line_naming_file_and_fix(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert re.search(expected, refusal(lambda: read_text(path, ("body",), cache=tmp_path / "c")))


def test_plain_text_has_only_a_text_column(tmp_path):
    (tmp_path / "d.txt").write_text("x\n")
    message = refusal(lambda: read_text(tmp_path / "d.txt", extra=("label",), cache=tmp_path / "c"))
    assert "plain text, which has no 'label' field" in message


# -- documents and blocks -------------------------------------------------------------------------------------
def test_documents_split_whole_and_the_same_every_time(tmp_path):
    path = lm.write_jsonl(tmp_path / "d.jsonl", lm.documents(20))
    cfg = load_config(
        overrides=[
            "model.task=causal_lm",
            f"data.path={path}",
            "data.text_field=body",
            "data.split={train: 0.7, val: 0.15, test: 0.15}",
            f"data.cache_dir={tmp_path / 'cache'}",
        ]
    )
    first, again = documents(cfg), documents(cfg)
    splits = [list(first.train["text"]), list(first.val["text"]), list(first.test["text"])]
    assert [len(s) for s in splits] == [14, 3, 3]
    assert sorted(sum(splits, [])) == sorted(row["body"] for row in lm.documents(20))  # each document once
    assert list(again.test["text"]) == list(first.test["text"])
    assert (tmp_path / "cache").is_dir()  # datasets' cache lives where data.cache_dir says


def test_too_few_documents_for_three_splits_are_refused(tmp_path):
    path = lm.write_jsonl(tmp_path / "d.jsonl", lm.documents(2))
    cfg = load_config(overrides=["model.task=causal_lm", f"data.path={path}", "data.text_field=body"])
    assert "2 document(s) cannot fill 3 splits" in refusal(lambda: documents(cfg))


def test_packing_makes_every_token_a_target_exactly_once():
    docs = [[5, 6, 7], [8], [9, 10, 11, 12]]
    special = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    tokens, lengths = np.array(sum(docs, [])), np.array([len(doc) for doc in docs])
    blocks = pack(tokens, lengths, block_size=4, special=special, vocab_size=20)
    labels = blocks.labels()
    assert blocks.ids[:, 0].tolist() == [1] * len(blocks)  # every block starts with BOS
    targets = labels[labels != IGNORE].tolist()
    assert targets == [5, 6, 7, 2, 8, 2, 9, 10, 11, 12, 2]  # documents end to end, each closed by EOS
    assert blocks.num_tokens == len(targets)
    item = blocks[len(blocks) - 1]
    assert item["attention_mask"].tolist() == [1, 1, 1, 0] and item["labels"].tolist()[-1] == IGNORE
    assert blocks.documents[labels != IGNORE].tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2]


def test_next_token_predictions_are_the_shifted_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    labels[:, 0], labels[1, 4] = IGNORE, IGNORE
    out = next_token_predictions(logits, labels)
    for b, t in [(0, 1), (0, 4), (1, 3)]:
        expected = -torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]]
        assert out[b, t, 0].item() == pytest.approx(expected.item(), abs=1e-5)
        assert out[b, t, 1].item() == logits[b, t - 1].argmax().item()
    assert out[:, 0].abs().sum() == 0 and out[1, 4].abs().sum() == 0  # unscored positions hold zeros


# -- the n-gram baseline --------------------------------------------------------------------------------------
def blocks_of(rows: list[list[int]], vocab: int):
    width = max(map(len, rows))
    ids = np.array([row + [0] * (width - len(row)) for row in rows])
    return type("Blocks", (), {"ids": ids, "lengths": np.array([len(r) for r in rows]), "vocab_size": vocab})()


def test_kneser_ney_is_a_distribution_and_learns_a_repeated_pattern():
    train = blocks_of([[1, 3, 4, 5, 3, 4, 5, 3, 4, 5]] * 4, vocab=8)
    orders = [ngram._count(ngram._grams(train, 3), 3, k) for k in (1, 2, 3)]
    for context in [(3, 4), (4, 5), (7, 7), (1, 1)]:
        assert ngram._distribution(context, orders, 0.75, 8).sum() == pytest.approx(1.0)
    test = blocks_of([[1, 3, 4, 5, 3, 4]], vocab=8)
    splits = type("Splits", (), {"train": train, "test": test})()
    out = ngram.kneser_ney(splits, order=3)
    assert out.shape == (1, 6, 2) and out[0, 0].tolist() == [0, 0]
    assert out[0, 1:, 1].tolist() == [3, 4, 5, 3, 4]  # the pattern, predicted
    assert (out[0, 2:, 0] < 0.2).all()  # and confidently: well under the uniform loss ln 8 = 2.08


def test_kneser_ney_by_hand_for_a_bigram():
    """Two bigram contexts seen, D = 0.5: P(w | 3) = max(c - D, 0) / c(3) + D * types(3) / c(3) * P_uni(w)."""
    train = blocks_of([[1, 3, 4], [1, 3, 4], [1, 3, 5]], vocab=6)
    orders = [ngram._count(ngram._grams(train, 2), 2, k) for k in (1, 2)]
    # Unigram continuation counts: 3 follows {1}, 4 follows {3}, 5 follows {3} -> 1/3 each, then mixed with uniform.
    unigram = ngram._distribution((), orders[:1], 0.5, 6)
    assert unigram[3] == pytest.approx(0.5 / 3 + 0.5 * 3 / 3 / 6)
    p = ngram._distribution((3,), orders, 0.5, 6)
    assert p[4] == pytest.approx((2 - 0.5) / 3 + 0.5 * 2 / 3 * unigram[4])
    assert p[5] == pytest.approx((1 - 0.5) / 3 + 0.5 * 2 / 3 * unigram[5])


# -- scoring and the report -----------------------------------------------------------------------------------
def token_predictions(loss: np.ndarray, right: np.ndarray, blocks: np.ndarray, docs: np.ndarray) -> Predictions:
    target = np.arange(len(loss)) % 5
    preds = np.stack([loss, np.where(right, target, target + 1)], axis=1).astype(np.float32)
    return Predictions(np.arange(len(loss)), preds, target, {"block": blocks, "document": docs})


def test_scores_are_mean_nats_perplexity_and_accuracy():
    side = token_predictions(np.array([1.0, 2.0, 3.0]), np.array([True, False, True]), np.zeros(3), np.zeros(3))
    scores = scoring.token_scores(side.preds, side.target, load_config().metrics)
    assert scores["token_loss"] == pytest.approx(2.0) and scores["perplexity"] == pytest.approx(math.exp(2.0))
    assert scores["next_token_accuracy"] == pytest.approx(2 / 3) and scores["num_tokens"] == 3


def lm_report(trained: Predictions, existing: Predictions, gates: list[str]) -> dict:
    from dsf_dist.comparison.report import build_report
    from dsf_dist.tasks import get_task

    cfg = load_config(overrides=["model.task=causal_lm", "comparison.primary_metric=perplexity", *gates])
    metrics = cfg.metrics
    results = [scoring.token_scores(side.preds, side.target, metrics) for side in (trained, existing)]
    return build_report(cfg, *results, trained, existing, ("trained", "existing"), get_task("causal_lm"))


def test_report_resamples_blocks_of_long_documents_and_gates_on_perplexity():
    rng = np.random.default_rng(0)
    n = 400
    blocks, docs = np.repeat(np.arange(40), 10), np.repeat(np.arange(4), 100)  # documents of 10 blocks each
    loss = rng.gamma(4.0, 0.5, n)
    trained = token_predictions(loss, rng.random(n) < 0.4, blocks, docs)
    existing = token_predictions(loss + 0.3, rng.random(n) < 0.3, blocks, docs)
    report = lm_report(trained, existing, ["comparison.min_relative={perplexity: -0.05}"])
    bootstrap = report["statistics"]["bootstrap"]
    assert bootstrap["unit"] == "block" and bootstrap["resampled"] == "the 40 test blocks (400 tokens)"
    ratio = report["statistics"]["perplexity_ratio"]
    assert ratio["value"] == pytest.approx(math.exp(-0.3), rel=1e-5) and ratio["ci"][1] < 1
    assert report["gates"]["passed"] and report["differences"]["perplexity"]["trained_better"]
    assert any("times the existing model's" in note and "excludes 1" in note for note in report["notes"])
    worse = lm_report(existing, trained, ["comparison.no_significant_regression=[token_loss]"])
    assert not worse["gates"]["passed"] and "lies below 0" in worse["gates"]["checks"][0]["reason"]


def test_short_documents_are_resampled_whole():
    blocks, docs = np.repeat(np.arange(2), 50), np.repeat(np.arange(20), 5)  # 10 documents per block
    side = token_predictions(np.ones(100), np.ones(100, bool), blocks, docs)
    assert scoring.resampling_unit(side)[0] == "document"


# -- bad input: one line, exit 2, no run folder ---------------------------------------------------------------
@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm-folders")
    tokenizer = lm.train_tokenizer([row["body"] for row in lm.documents(30)])
    made = {"good": lm.save_model(root / "good", tokenizer)}
    made["small"] = lm.save_model(root / "small", tokenizer, vocab_size=300)  # fewer rows than the tokenizer has
    made["pickled"] = root / "pickled"
    made["pickled"].mkdir()
    (made["pickled"] / "config.json").write_text((made["good"] / "config.json").read_text())
    torch.save({"w": torch.zeros(1)}, made["pickled"] / "pytorch_model.bin")
    made["remote"] = root / "remote"
    made["remote"].mkdir()
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (made["remote"] / name).write_bytes((made["good"] / name).read_bytes())
    config = json.loads((made["good"] / "config.json").read_text())
    (made["remote"] / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Model"}}))
    made["other"] = lm.save_model(root / "other", lm.train_tokenizer([row["body"] for row in lm.documents(30)[10:]]))
    made["data"] = lm.write_jsonl(root / "d.jsonl", lm.documents(30))
    return made


def refused_run(tmp_path: Path, capsys, *overrides: str) -> str:
    """`dsf run` through the real CLI function, in this process; returns its one stderr line."""
    code = cli.main(["run", "--output", str(tmp_path / "runs"), *sets(*overrides)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    runs = tmp_path / "runs"
    assert not runs.exists() or [path.name for path in runs.iterdir()] == [".cache"]  # no run folder (a data cache)
    return err


def finetune(folders, *extra: str) -> list[str]:
    return [
        "model.task=causal_lm",
        f"model.pretrained={folders['good']}",
        f"data.path={folders['data']}",
        "data.text_field=body",
        "data.block_size=32",
        "existing_model.kind=base",
        "comparison.primary_metric=perplexity",  # the default, accuracy, is refused for a causal LM
        "trainer.max_epochs=1",
        *extra,
    ]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "pickled",
            r"model.pretrained: .*pickled holds its weights as pickles \(pytorch_model.bin\).*safetensors only",
        ),
        (
            "remote",
            r"model.pretrained: .*remote needs Python code from the folder .*unless model.trust_remote_code is true",
        ),
        ("small", r"model.pretrained: the tokenizer \(.*small\) has 320 tokens but the model \(.*small\) has 300"),
        ("block", r"data.block_size: 100 tokens is above the context length of model.pretrained \(64\)"),
        ("architecture_block", r"data.block_size: 100 tokens is above the context length of model.architecture"),
        ("tokenizer", r"model.tokenizer: the tokenizer \(.*other\) has 320 tokens but the model \(.*small\) has 300"),
        ("existing_tokenizer", r"existing_model.path: .*other has another tokenizer than the trained model"),
    ],
)
def test_bad_models_are_refused_before_the_run_folder(tmp_path, capsys, folders, case, expected):
    overrides = {
        "pickled": finetune(folders, f"model.pretrained={folders['pickled']}"),
        "remote": finetune(folders, f"model.pretrained={folders['remote']}"),
        "small": finetune(folders, f"model.pretrained={folders['small']}"),
        "block": finetune(folders, "data.block_size=100"),
        "architecture_block": [
            *finetune(folders, "model.pretrained=null", "existing_model.kind=none"),
            f"model.architecture={json.dumps(lm.TINY)}",
            "data.block_size=100",
        ],
        "tokenizer": finetune(folders, f"model.pretrained={folders['small']}", f"model.tokenizer={folders['other']}"),
        "existing_tokenizer": finetune(
            folders, "existing_model.kind=pretrained", f"existing_model.path={folders['other']}"
        ),
    }[case]
    assert re.search(expected, refused_run(tmp_path, capsys, *overrides))


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ('{"body": "some text"}\n{"title": "no body"}\n', r"d.jsonl:2: no 'body' field \(the line has: title\)"),
        ("", r"data.path: .*d.jsonl is empty"),
    ],
)
def test_bad_data_is_refused_before_the_run_folder(tmp_path, capsys, folders, rows, expected):
    path = tmp_path / "d.jsonl"
    path.write_text(rows)
    assert re.search(expected, refused_run(tmp_path, capsys, *finetune(folders, f"data.path={path}")))


def test_remote_code_passes_the_folder_check_only_when_the_config_trusts_it(folders):
    from dsf_dist.tasks.causal_lm.folders import check_model_folder

    with pytest.raises(ConfigError, match=r"auto_map.*model.trust_remote_code"):
        check_model_folder(str(folders["remote"]), "model.pretrained")
    assert check_model_folder(str(folders["remote"]), "model.pretrained", trust_remote_code=True)["auto_map"]
