"""Scoring language models: every test token once, the same tokens for both models.

A predictions file arrives one row per block (index: block, preds: (block, position, [loss, first choice]),
target: the block's labels, -100 where unscored) and is rewritten one row per scored token: index (token number),
preds (loss in nats, first-choice token id), target (token id), block and document (of the test split). From it:
token_loss (mean nats per token), perplexity (exp of it), next_token_accuracy, and paired bootstrap intervals
over whole test documents, or over blocks when documents are longer than a block.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dsf_dist import files
from dsf_dist.config.schema import ComparisonConfig, MetricsConfig
from dsf_dist.scoring import stats

IGNORE = -100
METRICS = ("token_loss", "perplexity", "next_token_accuracy")


def to_tokens(path: Path, documents: np.ndarray) -> None:
    """Rewrite a block-level predictions file as one sample per scored token; `documents` is the test split's
    (block, position) -> document table. Idempotent."""
    arrays = files.read_arrays(path)
    if "block" in arrays:  # already one sample per token
        return
    target, preds, blocks = arrays["target"].astype(np.int64), arrays["preds"], arrays["index"]
    real = target != IGNORE
    files.write_arrays(
        path,
        index=np.arange(int(real.sum())),
        preds=preds[real].astype(np.float32),
        target=target[real],
        block=np.repeat(blocks, real.sum(axis=1)),
        document=documents[blocks][real].astype(np.int64),
    )


def token_scores(preds: np.ndarray, target: np.ndarray, metrics: MetricsConfig) -> dict[str, Any]:
    preds = np.asarray(preds, dtype=np.float64).reshape(len(target), 2)
    loss = float(preds[:, 0].mean())
    found: dict[str, Any] = {"num_samples": int(len(target)), "num_tokens": int(len(target))}
    if metrics.token_loss:
        found["token_loss"] = loss
    if metrics.perplexity:
        found["perplexity"] = math.exp(loss)
    if metrics.next_token_accuracy:
        found["next_token_accuracy"] = float((preds[:, 1] == np.asarray(target)).mean())
    return found


# -- the report -----------------------------------------------------------------------------------------------
def resampling_unit(trained: Any) -> tuple[str, np.ndarray]:
    """Documents when the median test document fits in a block, else blocks: the unit must be long enough to
    carry its own context, and numerous enough for the bootstrap."""
    document, block = trained.extra["document"], trained.extra["block"]
    per_document = np.bincount(document)
    per_block = np.bincount(block - block.min())
    longer = np.median(per_document[per_document > 0]) > per_block.max()
    return ("block", block) if longer else ("document", document)


def unit_sums(side: Any, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resampling unit: the summed token loss and the number of right first choices."""
    _, inverse = np.unique(units, return_inverse=True)
    preds = np.asarray(side.preds, dtype=np.float64).reshape(len(side.target), 2)
    loss = np.bincount(inverse, weights=preds[:, 0])
    right = np.bincount(inverse, weights=(preds[:, 1] == side.target).astype(np.float64))
    return loss, right


def lm_statistics(trained: Any, existing: Any, metrics: list[str], cfg: ComparisonConfig) -> dict[str, Any]:
    """Paired bootstrap of token_loss, perplexity and next_token_accuracy over whole units (both models' sums per
    unit resampled together), and the perplexity ratio's interval, exp of the loss difference's."""
    unit, units = resampling_unit(trained)
    names = [metric for metric in METRICS if metric in metrics]
    (loss_t, right_t), (loss_e, right_e) = unit_sums(trained, units), unit_sums(existing, units)
    counts = np.bincount(np.unique(units, return_inverse=True)[1]).astype(np.float64)

    def statistic(lt, rt, le, re, n, axis: int = -1) -> np.ndarray:
        tokens = n.sum(axis=axis)
        values = []
        for loss, right in ((lt, rt), (le, re)):
            mean = loss.sum(axis=axis) / tokens
            by_name = {"token_loss": mean, "perplexity": np.exp(mean), "next_token_accuracy": right.sum(axis) / tokens}
            values += [by_name[name] for name in names]
        return np.stack(values)

    bootstrap = {**stats.bootstrap_info(cfg), "unit": unit, "metrics": {}}
    bootstrap["resampled"] = f"the {len(counts):,} test {unit}s ({len(trained.target):,} tokens)"
    if names:
        data = [loss_t, right_t, loss_e, right_e, counts]
        bootstrap["metrics"] = stats.paired_bootstrap(
            statistic, data, names, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=cfg.seed
        )
    return {"bootstrap": bootstrap, "perplexity_ratio": _ratio(bootstrap["metrics"].get("token_loss"))}


def _ratio(loss: dict[str, Any] | None) -> dict[str, Any] | None:
    """trained / existing perplexity = exp(trained - existing token loss), so its interval is exp of that one's
    (the percentile interval follows any monotone map)."""
    if loss is None:
        return None
    interval = loss["difference_ci"]
    return {
        "value": math.exp(loss["difference"]),
        "ci": [math.exp(interval[0]), math.exp(interval[1])] if interval else None,
    }


def lm_notes(report: dict[str, Any], trained: Any) -> list[str]:
    """The numbers in words, as the classification report gives McNemar's test."""
    statistics = report["statistics"]
    bootstrap = statistics["bootstrap"]
    documents = len(np.unique(trained.extra["document"]))
    notes = [
        f"Both models scored the same {len(trained.target):,} test tokens of {documents:,} test documents, each "
        "once, with the same tokenizer. token_loss is the mean cross-entropy of the next token in nats; perplexity "
        "is exp(token_loss), the number of equally likely tokens the model is as unsure as; next_token_accuracy is "
        "the share of tokens the model ranked first."
    ]
    if bootstrap["unit"] == "block":
        notes.append(
            "Intervals resample whole blocks, because the test documents are longer than a block; tokens within "
            "a block share their context and are not resampled one by one."
        )
    else:
        notes.append("Intervals resample whole test documents, with all their tokens.")
    ratio = statistics.get("perplexity_ratio")
    if ratio:
        level = f"{bootstrap['confidence']:.0%}"
        change = ratio["value"] - 1
        words = f"{abs(change):.1%} {'lower' if change < 0 else 'higher'}"
        line = f"The trained model's perplexity is {ratio['value']:.3f} times the existing model's ({words})"
        if ratio["ci"]:
            low, high = ratio["ci"]
            verdict = "includes 1, so the difference is within noise" if low <= 1 <= high else "excludes 1"
            line += f"; the {level} CI of the ratio [{low:.3f}, {high:.3f}] {verdict}"
        notes.append(line + ".")
    return notes
