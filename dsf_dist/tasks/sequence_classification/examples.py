"""Sequence-classification data as read: texts (and optional second texts, for pairs) with a label each, from
data.path / data.test_path (JSONL, CSV or parquet through data/text.py) or from Python's own documentation
(data.dataset pydoc_topics); the label set from the training data; a stratified split. Torch-free.

Label ids are the positions of the training label names in sorted order (integers sort as numbers), so the same
data always gives the same ids, whichever rows a split happened to draw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from dsf_dist.config.schema import DsfConfig
from dsf_dist.errors import ConfigError

PYDOC_TOPICS = "pydoc_topics"
MIN_PARAGRAPH = 80  # characters: shorter pydoc paragraphs are headings and one-line examples

# The 79 help topics of pydoc_data.topics in six coarse groups: what a paragraph is about, as a reader would file it.
TOPIC_GROUPS = {
    "control_flow": (
        "assert async break compound context-managers continue else exceptions for if pass raise return try while with "
        "yield await debugger"
    ),
    "names_and_scope": (
        "assignment augassign del dynamic-features execmodel global identifiers import naming nonlocal atom-identifiers"
    ),
    "expressions": (
        "atom-literals attribute-references binary bitwise booleans calls comparisons conversions exprlists "
        "formatstrings in lambda operator-summary power shifting slicings subscriptions unary"
    ),
    "numbers": "floating imaginary integers numbers numeric-types truth",
    "builtin_types": (
        "bltin-code-objects bltin-ellipsis-object bltin-null-object bltin-type-objects dict lists sequence-types "
        "string-methods strings types typesfunctions typesmapping typesmethods typesmodules typesseq typesseq-mutable"
    ),
    "data_model": "attribute-access callable-types class customization function id-classes objects specialattrs "
    "specialnames",
}


@dataclass(frozen=True)
class Examples:
    """Rows of one file (or source), in order."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[object]

    def subset(self, rows: list[int]) -> Examples:
        pairs = [self.pairs[i] for i in rows] if self.pairs is not None else None
        return Examples([self.texts[i] for i in rows], pairs, [self.labels[i] for i in rows])


def topic_group(title: str) -> str:
    for group, titles in TOPIC_GROUPS.items():
        if title in titles.split():
            return group
    raise KeyError(title)


def pydoc_paragraphs() -> Examples:
    """Paragraphs of at least MIN_PARAGRAPH characters of every pydoc help topic, labelled by the topic's group."""
    from dsf_dist.data.text import python_docs

    texts, labels = [], []
    for row in python_docs():
        for paragraph in re.split(r"\n\s*\n", row["text"]):
            paragraph = " ".join(paragraph.split())
            if len(paragraph) >= MIN_PARAGRAPH:
                texts.append(paragraph)
                labels.append(topic_group(row["title"]))
    return Examples(texts, None, labels)


@cache
def read_examples(path: str, key: str, text: str, pair: str | None, label: str, cache_dir: str) -> Examples:
    """A file's texts, second texts and labels, each column checked by data/text.py (one line naming the file and
    the config key that names the column)."""
    from pathlib import Path

    from dsf_dist.data.text import read_text

    def column(name: str, field_key: str, is_text: bool) -> list:
        names = (name,) if is_text else ()
        found = read_text(path, names, () if is_text else (name,), key=key, field_key=field_key, cache=Path(cache_dir))
        return list(found[name])

    texts = column(text, "data.text_field", True)
    pairs = column(pair, "data.text_pair_field", True) if pair else None
    return Examples(texts, pairs, column(label, "data.label_field", False))


def examples(cfg: DsfConfig, test: bool = False) -> Examples | None:
    """data.path's rows (or the pydoc paragraphs); with `test`, data.test_path's (None without one)."""
    from dsf_dist.data.text import cache_dir

    data = cfg.data
    path, key = (data.test_path, "data.test_path") if test else (data.path, "data.path")
    if path is None:
        if test or data.dataset == PYDOC_TOPICS:
            return None if test else pydoc_paragraphs()
        raise ConfigError(
            f"data.path: sequence_classification reads texts and labels from a JSONL, CSV or parquet file; set "
            f"data.path (or data.dataset: {PYDOC_TOPICS} for Python's documentation)"
        )
    return read_examples(path, key, data.text_field, data.text_pair_field, data.label_field, str(cache_dir(cfg)))


def label_names(labels: list[object]) -> list[str]:
    """Every label name once, in sorted order (integers as numbers, then text)."""
    found = set(labels)
    ints = all(isinstance(value, int) and not isinstance(value, bool) for value in found)
    return [str(value) for value in sorted(found, key=lambda v: (0, v) if ints else (1, str(v)))]


def check_test_labels(names: list[str], test: Examples, path: str) -> None:
    """A test label the model never saw in training could never be predicted: refused, naming it."""
    known = set(names)
    for row, value in enumerate(test.labels):
        if str(value) not in known:
            raise ConfigError(
                f"data.test_path: {path} row {row + 1} has label '{value}', which the training data (data.path) never "
                f"has (its labels: {', '.join(names)}); add examples of it to data.path or drop those test rows"
            )


def stratified_rows(labels: list[object], fractions: tuple[float, float, float], seed: int) -> list[list[int]]:
    """Train, val and test rows: each label's rows shuffled (seeded) and cut by the fractions, with at least one
    row of every label in training, so that no test label is unseen; each part in file order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    by_label: dict[str, list[int]] = {}
    for row, value in enumerate(labels):
        by_label.setdefault(str(value), []).append(row)
    for name in sorted(by_label):
        rows = list(rng.permutation(by_label[name]))
        count = len(rows)
        test = round(count * fractions[2])
        val = round(count * fractions[1])
        while count - test - val < 1:  # keep one in training: a label seen only in test could never be predicted
            test, val = (test - 1, val) if test >= val and test > 0 else (test, val - 1)
        parts[0] += rows[: count - val - test]
        parts[1] += rows[count - val - test : count - test]
        parts[2] += rows[count - test :]
    return [sorted(int(row) for row in part) for part in parts]
