"""The documents a causal LM learns from, split by whole documents (a test document is never seen in training).

Sources: data.path (and data.test_path), a .txt (one document per blank-line separated paragraph), .jsonl or
.parquet (one document per row, its text in data.text_field) read by dsf_dist/data/text.py; or, without
data.path, data.dataset `pydoc_topics`: Python's own documentation, shipped with CPython.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dsf_dist.config.schema import DsfConfig
from dsf_dist.errors import ConfigError

if TYPE_CHECKING:
    import datasets

BUILT_IN = "pydoc_topics"


@dataclass(frozen=True)
class Documents:
    """Each split's documents as a datasets.Dataset with one column, `text`."""

    train: datasets.Dataset
    val: datasets.Dataset
    test: datasets.Dataset


def check_source(cfg: DsfConfig) -> None:
    """Torch-free: where the text comes from is named."""
    if not cfg.data.path and cfg.data.dataset != BUILT_IN:
        raise ConfigError(
            f"data.path: model.task causal_lm reads text files (.txt, .jsonl, .parquet); set data.path, or set "
            f"data.dataset to {BUILT_IN} for Python's bundled documentation"
        )


def documents(cfg: DsfConfig) -> Documents:
    """Read and split once per process; the split is seeded by run.seed, so every rank and every later
    `dsf test` of the run has the same documents in each split."""
    data = cfg.data
    check_source(cfg)
    corpus = _read(cfg, data.path, "data.path") if data.path else _built_in()
    if data.test_path:
        test = _read(cfg, data.test_path, "data.test_path")
        train, val = _split(corpus, [data.split.train, data.split.val], cfg.run.seed, "data.path")
        return Documents(train, val, test)
    train, val, test = _split(corpus, [data.split.train, data.split.val, data.split.test], cfg.run.seed, "data.path")
    return Documents(train, val, test)


def _read(cfg: DsfConfig, path: str, key: str) -> datasets.Dataset:
    from dsf_dist.data.text import cache_dir, read_text

    field = cfg.data.text_field
    dataset = read_text(path, (field,), key=key, cache=cache_dir(cfg))
    if field != "text":
        dataset = dataset.rename_column(field, "text")
    dataset = dataset.filter(lambda row: bool(row["text"].strip()))
    if len(dataset) == 0:
        raise ConfigError(f"{key}: {path} holds only blank documents; give a file with some text")
    return dataset


def _built_in() -> datasets.Dataset:
    from dsf_dist.data.text import python_docs

    return python_docs().select_columns(["text"])


def _split(corpus: datasets.Dataset, fractions: list[float], seed: int, key: str) -> list[datasets.Dataset]:
    """Whole documents to each split, in proportion, at least one each; a seeded permutation decides which."""
    import numpy as np

    total = sum(fractions)
    sizes = [max(1, round(len(corpus) * share / total)) for share in fractions[1:]]
    sizes.insert(0, len(corpus) - sum(sizes))
    if sizes[0] < 1:
        raise ConfigError(
            f"{key}: {len(corpus)} document(s) cannot fill {len(fractions)} splits with at least one each; give more "
            "documents (a .txt file has one per blank-line separated paragraph) or a separate data.test_path"
        )
    order = np.random.default_rng(seed).permutation(len(corpus))
    bounds = np.cumsum(sizes)[:-1]
    return [corpus.select(sorted(part.tolist())) for part in np.split(order, bounds)]
