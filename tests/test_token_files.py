"""Token-classification sentences read through Hugging Face datasets: a parquet file gives exactly the sentences
and labels its JSONL twin gives, and bad files of either kind are refused in one line naming the file (and the
line or row); through the real `dsf run` with exit 2 and no run folder written. Nothing trains."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import token_data
import yaml
from conftest import dsf, sets

from dsf_dist.errors import ConfigError
from dsf_dist.tasks.token_classification.sentences import read_sentences

os.environ["HF_HUB_OFFLINE"] = "1"


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("token_files")
    for name, count, seed in (("train", 40, 0), ("test", 15, 1)):
        token_data.write_sentences(root / f"{name}.jsonl", count, seed=seed)
        write_parquet(root / f"{name}.parquet", rows_of(root / f"{name}.jsonl"))
    write_parquet(root / "no_tags.parquet", [{"tokens": row["tokens"]} for row in rows_of(root / "train.jsonl")])
    schema = pa.schema([("tokens", pa.list_(pa.string())), ("tags", pa.list_(pa.string()))])
    write_parquet(root / "no_rows.parquet", [], schema)
    token_data.save_base_model(root / "base")
    config = {
        "model": {"task": "token_classification", "pretrained": "base"},
        "data": {
            "dataset": "tokens",
            "path": "train.jsonl",
            "test_path": "test.jsonl",
            "split": {"train": 0.85, "val": 0.15, "test": 0},
        },
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
        "existing_model": {"kind": "none"},
    }
    (root / "tokens.yaml").write_text(yaml.safe_dump(config))
    return root


def test_parquet_gives_the_same_sentences_and_labels_as_jsonl(project, monkeypatch):
    from dsf_dist.config import load_config
    from dsf_dist.tasks.token_classification import corpora, labels

    monkeypatch.chdir(project)
    read = {}
    for suffix in ("jsonl", "parquet"):
        cfg = load_config("tokens.yaml", [f"data.path=train.{suffix}", f"data.test_path=test.{suffix}"], "runs")
        read[suffix] = corpora(cfg), labels(cfg)
    (train, test), names = read["jsonl"]
    assert read["parquet"] == read["jsonl"]
    assert train == rows_of(project / "train.jsonl") and len(test) == 15
    assert names == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    # datasets kept its Arrow copies where every text task keeps them: beside the run folders, not in $HOME
    assert any((project / "runs" / ".cache" / "datasets").rglob("*.arrow"))


def test_numbers_read_as_text_as_before(tmp_path):
    path = write_parquet(tmp_path / "numbers.parquet", [{"tokens": [1, 2], "tags": [0, 0]}])
    assert read_sentences(path) == [{"tokens": ["1", "2"], "tags": ["0", "0"]}]


BAD = {
    "parquet without a tags column": (
        "no_tags.parquet",
        None,
        r"no_tags.parquet: no row has a 'tags' column \(columns: tokens\); give every row a 'tags' column",
    ),
    "parquet with no rows": ("no_rows.parquet", None, r"data.path: .*no_rows.parquet holds no rows"),
    "an empty parquet file": ("zero.parquet", b"", r"data.path: .*zero.parquet is empty"),
    "not parquet inside": ("junk.parquet", b"not parquet", r"junk.parquet: not a readable Parquet file"),
    "a parquet row with fewer tags": (
        "short.parquet",
        [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a", "b"], "tags": ["O"]}],
        r"short.parquet row 2: 2 tokens but 1 tags; give one tag per token",
    ),
    "a parquet row whose tags are null": (
        "null.parquet",
        [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a"], "tags": None}],
        r"null.parquet: row 2 has no 'tags' \(null\)",
    ),
    "a null tag in a list": (
        "null_tag.parquet",
        [{"tokens": ["a", "b"], "tags": ["O", None]}],
        r"null_tag.parquet row 1: a token or tag is null",
    ),
    "tokens as one string": (
        "string.parquet",
        [{"tokens": "a b", "tags": ["O", "O"]}],
        r"string.parquet: 'tokens' holds string, not lists",
    ),
    "a JSON line with fewer tags": (
        "short.jsonl",
        b'{"tokens": ["a"], "tags": ["O"]}\n\n{"tokens": ["a", "b"], "tags": ["O"]}\n',
        r"short.jsonl:3: 2 tokens but 1 tags",  # line 3: the blank line is counted
    ),
    "a JSON line without tags": (
        "no_tags.jsonl",
        b'{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"]}\n',
        r"no_tags.jsonl:2: no 'tags' field \(the line has: tokens\); add it",
    ),
    "tokens a list on some lines only": (
        "mixed.jsonl",
        b'{"tokens": ["a"], "tags": ["O"]}\n{"tokens": "a", "tags": ["O"]}\n',
        r"mixed.jsonl:2: 'tokens' is not a list; give each sentence a list of tokens",
    ),
    "a JSON list, not an object": ("list.jsonl", b'["a", "O"]\n', r"list.jsonl:1: not a JSON object \(a JSON list"),
    "a line that is not JSON": (
        "broken.jsonl",
        b'{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"\n',
        r"broken.jsonl:2: not a JSON object",
    ),
    "a CSV file": ("rows.csv", b"tokens,tags\na,O\n", r"data.path: .*rows.csv is not a .jsonl or .parquet file"),
    "no file": ("missing.jsonl", None, r"data.path: .*missing.jsonl is not a file; give a JSONL or parquet file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_is_refused_in_one_line_naming_it(project, tmp_path, case):
    name, content, expected = BAD[case]
    path = project / name if (project / name).exists() or content is None else tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, list):
        write_parquet(path, content)
    with pytest.raises(ConfigError, match=expected) as refused:
        read_sentences(path, cache=tmp_path / "cache")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.path=no_tags.parquet"], ["no_tags.parquet", "'tags' column", "give every row"]),
        (["data.test_path=no_rows.parquet"], ["data.test_path", "no_rows.parquet", "holds no rows"]),
    ],
    ids=["missing column", "no rows"],
)
def test_dsf_run_refuses_a_bad_parquet_file_before_the_run_folder(project, overrides, expected):
    args = ["run", "-c", "tokens.yaml", "--output", "runs-refused", *sets(*overrides)]
    done = dsf(*args, cwd=project, timeout=120, forbid=("pytorch_lightning",))
    assert done.returncode == 2, done.stderr[-2000:]  # 99: refused only once Lightning had loaded
    assert done.stderr.count("\n") == 1, done.stderr
    for part in expected:
        assert part in done.stderr, (part, done.stderr)
    assert [path.name for path in (project / "runs-refused").glob("*")] in ([], [".cache"])
