"""Paired statistics on per-sample predictions: bootstrap intervals of metric differences, McNemar's test.

numpy and scipy only, so saved results compare anywhere. Every metric here is computed from the same
per-sample predictions as the tasks' score(), with the same conventions (torchmetrics' and
scikit-learn's): a class neither predicted nor present counts in no average, a 0/0 precision or recall is 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BOOTSTRAP_METHOD = "percentile"
# Index arrays per bootstrap batch: bounds memory at a few tens of MB whatever the test set's size.
BATCH_ELEMENTS = 4_000_000


def labels_of(preds: np.ndarray) -> np.ndarray:
    """Class scores (N, C) -> labels; labels (N,) pass through."""
    preds = np.asarray(preds)
    return preds.argmax(axis=-1) if preds.ndim == 2 else preds.astype(np.int64)


def class_metrics(
    pred: np.ndarray, target: np.ndarray, num_classes: int, average: str, names: Sequence[str]
) -> np.ndarray:
    """`names` (accuracy, precision, recall, f1) for label arrays of shape (..., N); returns shape (len(names), ...).

    average: 'macro', 'micro', 'weighted', or 'binary' (class 1 is positive, as metrics.score does for two
    classes). Vectorised over leading axes, so one call scores a whole batch of bootstrap resamples.
    """
    batch_shape, n = pred.shape[:-1], pred.shape[-1]
    pred, target = pred.reshape(-1, n), target.reshape(-1, n)
    tp, predicted, actual = _class_counts(pred, target, num_classes)
    per_class = _per_class(tp, predicted, actual)
    out = []
    for name in names:
        if name == "accuracy":
            out.append((pred == target).mean(axis=-1))
        elif average == "micro":  # single-label: summed tp over summed predictions (or targets) is accuracy
            out.append(tp.sum(axis=-1) / n)
        else:
            out.append(_average(per_class[name], predicted, actual, average))
    return np.stack(out).reshape(len(names), *batch_shape)


def per_class_scores(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of each class (0 where undefined) and its support, for labels of shape (N,)."""
    tp, predicted, actual = (counts[0] for counts in _class_counts(pred[None], target[None], num_classes))
    return {**_per_class(tp, predicted, actual), "support": actual.astype(np.int64)}


def _class_counts(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """True positives, predictions and targets per row and class, for label arrays of shape (rows, N)."""
    rows = pred.shape[0]
    offset = np.arange(rows)[:, None] * num_classes

    def per_row_class(values: np.ndarray) -> np.ndarray:
        return np.bincount(values, minlength=rows * num_classes).reshape(rows, num_classes).astype(float)

    tp = per_row_class((offset + target)[pred == target])
    return tp, per_row_class((offset + pred).ravel()), per_row_class((offset + target).ravel())


def _per_class(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "precision": _safe_divide(tp, predicted),
        "recall": _safe_divide(tp, actual),
        "f1": _safe_divide(2 * tp, predicted + actual),
    }


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _average(values: np.ndarray, predicted: np.ndarray, actual: np.ndarray, average: str) -> np.ndarray:
    if average == "binary":
        return values[:, 1]
    weights = actual if average == "weighted" else ((predicted + actual) > 0).astype(float)
    return (values * weights).sum(axis=-1) / weights.sum(axis=-1)


def regression_errors(preds: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample squared and absolute error, averaged over each sample's values: their means are MSE and MAE."""
    diff = (np.asarray(preds, dtype=float) - np.asarray(target, dtype=float)).reshape(len(target), -1)
    return {"mse": (diff**2).mean(axis=1), "mae": np.abs(diff).mean(axis=1)}


def bootstrap_info(cfg: Any) -> dict[str, Any]:
    """How the intervals were made, from the comparison section (bootstrap_resamples, confidence, seed)."""
    return {
        "method": f"paired bootstrap, {BOOTSTRAP_METHOD} interval",
        "resamples": cfg.bootstrap_resamples,
        "confidence": cfg.confidence,
        "seed": cfg.seed,
    }


def paired_bootstrap(
    statistic: Callable[..., np.ndarray],
    data: Sequence[np.ndarray],
    names: Sequence[str],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Percentile bootstrap of `statistic(*data, axis=-1)`, which returns 2 * len(names) values: the trained
    model's metrics, then the existing model's. Samples are resampled together (paired), so the interval of
    the difference keeps the correlation between the two models' errors on the same sample.

    Returns {name: {trained, existing, difference, trained_ci, existing_ci, difference_ci}}; the intervals
    are None with fewer than two samples.
    """
    from scipy.stats import bootstrap

    def with_difference(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        values = statistic(*arrays, axis=axis)
        trained, existing = values[: len(names)], values[len(names) :]
        return np.concatenate([trained, existing, trained - existing])

    point = with_difference(*data)
    n = len(data[0])
    low = high = None
    if n >= 2:
        with warnings.catch_warnings():
            # Identical models give a degenerate (all-zero) difference distribution: its interval [0, 0] is right.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = bootstrap(
                tuple(data),
                with_difference,
                n_resamples=resamples,
                batch=max(1, BATCH_ELEMENTS // n),
                vectorized=True,
                paired=True,
                confidence_level=confidence,
                method=BOOTSTRAP_METHOD,
                rng=np.random.default_rng(seed),
            )
        low, high = result.confidence_interval.low, result.confidence_interval.high
    m = len(names)
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        entry: dict[str, Any] = {}
        for j, key in enumerate(("trained", "existing", "difference")):
            k = j * m + i
            entry[key] = float(point[k])
            entry[f"{key}_ci"] = None if low is None else [float(low[k]), float(high[k])]
        out[name] = entry
    return out


def mcnemar(trained_correct: np.ndarray, existing_correct: np.ndarray, alpha: float) -> dict[str, Any]:
    """McNemar's test on the samples where exactly one model is right: exact binomial, two-sided.

    Under "the two models are equally accurate", each such sample is equally likely to favour either model,
    so the trained model's count is Binomial(discordant, 1/2). The exact test is valid for any count; the
    chi-square approximation is not needed.
    """
    from scipy.stats import binomtest

    trained_only = int(np.sum(trained_correct & ~existing_correct))
    existing_only = int(np.sum(existing_correct & ~trained_correct))
    discordant = trained_only + existing_only
    p_value = float(binomtest(trained_only, discordant, 0.5).pvalue) if discordant else 1.0
    favours = "trained" if trained_only > existing_only else "existing" if existing_only > trained_only else "neither"
    return {
        "test": "McNemar, exact binomial, two-sided",
        "trained_only_correct": trained_only,
        "existing_only_correct": existing_only,
        "discordant": discordant,
        "p_value": p_value,
        "alpha": alpha,
        "significant": p_value < alpha,
        "favours": favours,
    }
