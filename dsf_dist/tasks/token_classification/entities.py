"""Entity-level scores for token classification, and the word-level view the comparison works on.

The entity extractor is written here (about 20 lines) rather than taken from seqeval: seqeval is unmaintained
since 2020 and pulls scikit-learn's full metrics stack per call; its default mode is the conlleval rule set,
which this reproduces for BIO and IO tags: a chunk starts at B-X, or at I-X after O or after another type,
and an entity counts only when its type, start and end all match (micro-averaged precision, recall, F1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dsf_dist import files
from dsf_dist.scoring import stats
from dsf_dist.tasks.token_classification.sentences import IGNORE


def entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, first word, one past the last word) of every chunk in one sentence's tags."""
    spans, start, kind = set(), None, None
    for position, tag in enumerate([*tags, "O"]):
        prefix, _, tag_type = tag.partition("-") if "-" in tag else ("O" if tag == "O" else "I", "", tag)
        if start is not None and (prefix in ("O", "B") or tag_type != kind):
            spans.add((kind, start, position))
            start = kind = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = position, tag_type
    return spans


def to_words(path: Path) -> None:
    """Rewrite a sentence-level predictions file (rows padded with -100) as one sample per word: index (word
    number, sentence-major), preds and target (label ids), sentence (which test sentence the word is in)."""
    arrays = files.read_arrays(path)
    if "sentence" in arrays:  # already one sample per word
        return
    target, preds = arrays["target"].astype(np.int64), arrays["preds"].astype(np.int64)
    real = target != IGNORE
    files.write_arrays(
        path,
        index=np.arange(int(real.sum())),
        preds=preds[real],
        target=target[real],
        sentence=np.repeat(arrays["index"], real.sum(axis=1)),
    )


def sentence_counts(preds: np.ndarray, target: np.ndarray, sentence: np.ndarray, labels: list[str]) -> np.ndarray:
    """Per sentence: (entities found correctly, entities predicted, entities in the gold tags)."""
    names = np.asarray(labels)
    bounds = np.flatnonzero(np.diff(sentence)) + 1
    rows = []
    for pred, gold in zip(np.split(preds, bounds), np.split(target, bounds), strict=True):
        found, true = entities(list(names[pred])), entities(list(names[gold]))
        rows.append((len(found & true), len(found), len(true)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def entity_scores(arrays: dict[str, np.ndarray], labels: list[str]) -> dict[str, float]:
    tp, predicted, actual = sentence_counts(arrays["preds"], arrays["target"], arrays["sentence"], labels).sum(0)
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * tp / (predicted + actual) if predicted + actual else 0.0
    return {"entity_precision": float(precision), "entity_recall": float(recall), "entity_f1": float(f1)}


def entity_bootstrap(trained: Any, existing: Any, labels: list[str], cfg: Any) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of entity F1 over whole sentences: an entity spans words, so words cannot be resampled
    one by one; resampling sentences keeps each sentence's entities (and their correlation) together."""
    sentence = trained.extra["sentence"]
    ours, theirs = (sentence_counts(p.preds, p.target, sentence, labels) for p in (trained, existing))

    def statistic(tp_a, found_a, tp_b, found_b, gold, axis: int = -1) -> np.ndarray:
        def f1(tp, found):
            return 2 * tp.sum(axis=axis) / np.maximum(found.sum(axis=axis) + gold.sum(axis=axis), 1)

        return np.stack([f1(tp_a, found_a), f1(tp_b, found_b)])

    data = [ours[:, 0], ours[:, 1], theirs[:, 0], theirs[:, 1], ours[:, 2]]
    return stats.paired_bootstrap(
        statistic, data, ["entity_f1"], resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=cfg.seed
    )


def token_report(report: dict[str, Any], trained: Any, existing: Any, labels: list[str], cfg: Any) -> None:
    """Add the entity-F1 interval (resampled by sentence) and say what a sample is."""
    if "sentence" not in trained.extra or "sentence" not in existing.extra:
        return
    bootstrap = report.setdefault("statistics", {}).setdefault("bootstrap", {}).setdefault("metrics", {})
    if "entity_f1" in report["comparison"]:
        bootstrap.update(entity_bootstrap(trained, existing, labels, cfg))
    sentences = len(np.unique(trained.extra["sentence"]))
    report["notes"].append(
        f"Samples are the {len(trained.target):,} words of {sentences:,} test sentences "
        "(each word scored on its first sub-token). Word-level intervals and McNemar's test treat words as "
        "independent, which words of one sentence are not, so they are somewhat too narrow; the entity_f1 "
        "interval resamples whole sentences."
    )
