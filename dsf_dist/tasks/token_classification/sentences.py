"""Token-classification data as read: sentences `{"tokens": [...], "tags": [...]}` (BIO tags), one a JSON line or
a parquet row, read through Hugging Face `datasets` (data/text.py), and the label set taken from the data.
Torch-free, so the task's checks run when a config loads."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from dsf_dist.errors import ConfigError

IGNORE = -100  # torch's cross_entropy ignore_index, and Hugging Face's convention for unlabelled positions
COLUMNS = ("tokens", "tags")
SUFFIXES = (".jsonl", ".json", ".parquet")  # what holds lists: not .txt or .csv


def read_sentences(path: str | Path, key: str = "data.path", cache: Path | None = None) -> list[dict[str, list[str]]]:
    """Every row one sentence with as many tags as tokens; a bad row is named by file and line (JSONL) or row
    (parquet). `cache` is where `datasets` keeps its copy (data/text.py's cache_dir(cfg) for a run); None, for a
    call without a config: a temporary folder, removed once the file is read (the sentences are then in memory)."""
    if cache is None:
        with tempfile.TemporaryDirectory(prefix="dsf-datasets-") as temporary:
            return read_sentences(path, key, Path(temporary))
    import pyarrow as pa

    from dsf_dist.data.text import place, read_text

    path = Path(path)
    rows = "{'tokens': [...], 'tags': [...]}"
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file; give a JSONL or parquet file of {rows} rows")
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"{key}: {path} is not a .jsonl or .parquet file; give one of {rows} rows")
    dataset = read_text(path, (), COLUMNS, key=key, field_key=None, cache=cache)
    for column in COLUMNS:
        kind = dataset.data.schema.field(column).type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            where = _first_line_without_a_list(path, column) or f"{path}: '{column}' holds {kind}, not lists"
            raise ConfigError(f"{where}; give each sentence a list of {column}")
    sentences = []
    columns = (dataset.data.column(column).to_pylist() for column in COLUMNS)  # arrow to lists: 30x a Column's rows
    for row, (tokens, tags) in enumerate(zip(*columns, strict=True)):
        if len(tokens) != len(tags) or not tokens:
            raise ConfigError(f"{place(path, row)}: {len(tokens)} tokens but {len(tags)} tags; give one tag per token")
        if None in tokens or None in tags:
            raise ConfigError(f"{place(path, row)}: a token or tag is null; give every token and tag as text")
        # str(): numbers as tokens or tags read as they did when dsf parsed the JSON itself
        sentences.append({"tokens": [str(t) for t in tokens], "tags": [str(t) for t in tags]})
    return sentences


def _first_line_without_a_list(path: Path, column: str) -> str | None:
    """JSON lines whose field is a list on some lines only load as one JSON-typed column: name the first other."""
    if path.suffix.lower() == ".parquet":
        return None  # a parquet column has one type
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if line.strip() and not isinstance(json.loads(line).get(column), list):
            return f"{path}:{number}: '{column}' is not a list"
    return None


def label_names(*corpora: list[dict[str, list[str]]]) -> list[str]:
    """Every tag in the data, 'O' first, then by entity type with B- before I-: the same order from the
    same data, so a run's label ids never depend on which split a tag happened to land in."""
    tags = {tag for sentences in corpora for sentence in sentences for tag in sentence["tags"]}

    def order(tag: str) -> tuple[int, str, str]:
        prefix, _, kind = tag.partition("-")
        return (0, "", "") if tag == "O" else (1, kind or prefix, prefix)

    return sorted(tags, key=order)
