"""Score saved predictions. The trained and the existing model go through this same function, on the
same samples, so their numbers are comparable by construction."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.functional import classification as C
from torchmetrics.functional import mean_absolute_error, mean_squared_error

from dsf_dist.config.schema import MetricsConfig
from dsf_dist.stats import HIGHER_IS_BETTER

__all__ = ["HIGHER_IS_BETTER", "score", "to_labels"]


def to_labels(preds: np.ndarray) -> torch.Tensor:
    """Class scores (N, C) -> labels; labels (N,) pass through."""
    tensor = torch.as_tensor(preds)
    return tensor.argmax(dim=-1) if tensor.ndim == 2 else tensor.long()


def score(
    preds: np.ndarray, target: np.ndarray, task: str, cfg: MetricsConfig, num_classes: int | None
) -> dict[str, Any]:
    results: dict[str, Any] = {"num_samples": int(len(target))}
    if task == "regression":
        pred_t, target_t = torch.as_tensor(preds).float(), torch.as_tensor(target).float()
        if cfg.mse:
            results["mse"] = float(mean_squared_error(pred_t, target_t))
        if cfg.mae:
            results["mae"] = float(mean_absolute_error(pred_t, target_t))
        return results
    labels, target_t = to_labels(preds), torch.as_tensor(target).long()
    classes = num_classes or int(max(labels.max(), target_t.max())) + 1
    results.update(_binary(labels, target_t, cfg) if classes == 2 else _multiclass(labels, target_t, cfg, classes))
    return results


def _multiclass(labels: torch.Tensor, target: torch.Tensor, cfg: MetricsConfig, classes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cfg.accuracy:
        out["accuracy"] = float(C.multiclass_accuracy(labels, target, classes, average="micro"))
    for name, fn in (
        ("precision", C.multiclass_precision),
        ("recall", C.multiclass_recall),
        ("f1", C.multiclass_f1_score),
    ):
        if getattr(cfg, name):
            out[name] = float(fn(labels, target, classes, average=cfg.average))
    if cfg.confusion_matrix:
        out["confusion_matrix"] = C.multiclass_confusion_matrix(labels, target, classes).tolist()
    return out


def _binary(labels: torch.Tensor, target: torch.Tensor, cfg: MetricsConfig) -> dict[str, Any]:
    """Two classes: class 1 is positive, and the confusion matrix takes the seed's tp/tn/fp/fn form."""
    out: dict[str, Any] = {}
    for name, fn in (
        ("accuracy", C.binary_accuracy),
        ("precision", C.binary_precision),
        ("recall", C.binary_recall),
        ("f1", C.binary_f1_score),
    ):
        if getattr(cfg, name):
            out[name] = float(fn(labels, target))
    if cfg.confusion_matrix:
        (tn, fp), (fn_, tp) = C.binary_confusion_matrix(labels, target).tolist()
        out["confusion_matrix"] = {"tp": tp, "tn": tn, "fp": fp, "fn": fn_}
    return out
