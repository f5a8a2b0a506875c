"""Classification: cross-entropy over class logits; accuracy, precision, recall, F1 and the confusion matrix of
saved predictions (torchmetrics); per-class tables, paired bootstrap intervals and McNemar's test in the report.

The trained and the existing model go through the same `score`, on the same samples, so their numbers are
comparable by construction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsf_dist.config.metrics import HIGHER_IS_BETTER
from dsf_dist.config.schema import ComparisonConfig, DsfConfig, MetricsConfig, ModelConfig
from dsf_dist.tasks.base import Task

if TYPE_CHECKING:
    import numpy as np
    import torch

    from dsf_dist.data import Splits
    from dsf_dist.scoring.predictions import Predictions


class ClassificationTask(Task):
    name = "classification"
    metrics = ("accuracy", "precision", "recall", "f1")
    objective = "cross_entropy"

    def output_size(self, model: ModelConfig, splits: Splits) -> int:
        train = splits.train
        return model.num_classes or int(max(int(train[i][1]) for i in range(len(train)))) + 1

    def num_classes(self, cfg: DsfConfig, splits: Splits) -> int | None:
        return cfg.model.num_classes or self.output_size(cfg.model, splits)

    def score(
        self, preds: np.ndarray, target: np.ndarray, metrics: MetricsConfig, num_classes: int | None
    ) -> dict[str, Any]:
        import torch

        labels, target_t = to_labels(preds), torch.as_tensor(target).long()
        classes = num_classes or int(max(labels.max(), target_t.max())) + 1
        scores = _binary(labels, target_t, metrics) if classes == 2 else _multiclass(labels, target_t, metrics, classes)
        return {"num_samples": int(len(target)), **scores}

    def add_to_report(
        self,
        report: dict[str, Any],
        cfg: DsfConfig,
        test_results: dict[str, Any],
        trained: Predictions,
        existing: Predictions,
    ) -> None:
        classes = count_classes(cfg, test_results, trained, existing)
        report["classes"] = class_names(self.comparison_names(cfg, test_results), classes, report["notes"])
        report["per_class"] = per_class_table(trained, existing, report["classes"])
        average = "binary" if classes == 2 else cfg.metrics.average
        scalar = [metric for metric in report["differences"] if metric in HIGHER_IS_BETTER]
        report["statistics"] = classification_statistics(trained, existing, scalar, classes, average, cfg.comparison)

    def comparison_names(self, cfg: DsfConfig, test_results: dict[str, Any]) -> ComparisonConfig:
        """The comparison section whose class_names label the report's classes."""
        return cfg.comparison


def to_labels(preds: np.ndarray) -> torch.Tensor:
    """Class scores (N, C) -> labels; labels (N,) pass through."""
    import torch

    tensor = torch.as_tensor(preds)
    return tensor.argmax(dim=-1) if tensor.ndim == 2 else tensor.long()


def _multiclass(labels: torch.Tensor, target: torch.Tensor, cfg: MetricsConfig, classes: int) -> dict[str, Any]:
    from torchmetrics.functional import classification as C

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
    from torchmetrics.functional import classification as C

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


# -- the report's classification parts -------------------------------------------------------------------------
def count_classes(cfg: DsfConfig, results: dict[str, Any], *predictions: Predictions) -> int:
    """The class count the scores used (the confusion matrix's size), widened to every label that occurs."""
    from dsf_dist.scoring import stats

    counts = [cfg.model.num_classes or 0]
    matrix = results.get("confusion_matrix")
    if matrix is not None:
        counts.append(2 if isinstance(matrix, dict) else len(matrix))
    for side in predictions:
        if side.preds.ndim == 2:
            counts.append(side.preds.shape[1])
        counts += [int(stats.labels_of(side.preds).max()) + 1, int(side.target.max()) + 1]
    return max(counts)


def class_names(cfg: ComparisonConfig, classes: int, notes: list[str]) -> list[str]:
    if cfg.class_names is None:
        return [str(i) for i in range(classes)]
    if len(cfg.class_names) != classes:
        notes.append(
            f"comparison.class_names has {len(cfg.class_names)} names for {classes} classes; showing class indices"
        )
        return [str(i) for i in range(classes)]
    return list(cfg.class_names)


def per_class_table(trained: Predictions, existing: Predictions, names: list[str]) -> list[dict[str, Any]]:
    """One row per class: support, and precision / recall / F1 of both models with trained - existing."""
    import numpy as np

    from dsf_dist.scoring import stats

    target = trained.target.astype(np.int64)
    sides = [stats.per_class_scores(stats.labels_of(side.preds), target, len(names)) for side in (trained, existing)]
    rows = []
    for i, name in enumerate(names):
        row: dict[str, Any] = {"class": name, "support": int(sides[0]["support"][i])}
        for metric in ("precision", "recall", "f1"):
            pair = [float(side[metric][i]) for side in sides]
            row[metric] = {"trained": pair[0], "existing": pair[1], "difference": pair[0] - pair[1]}
        rows.append(row)
    return rows


def classification_statistics(
    trained: Predictions, existing: Predictions, metrics: list[str], classes: int, average: str, cfg: ComparisonConfig
) -> dict[str, Any]:
    """Paired bootstrap intervals of accuracy, precision, recall, F1, and McNemar's test on the samples where
    exactly one model is right."""
    import numpy as np

    from dsf_dist.scoring import stats

    names = [metric for metric in ClassificationTask.metrics if metric in metrics]
    labels = [stats.labels_of(side.preds) for side in (trained, existing)]
    target = trained.target.astype(np.int64)

    def statistic(trained_labels: np.ndarray, existing_labels: np.ndarray, y: np.ndarray, axis: int = -1):
        return np.concatenate(
            [stats.class_metrics(side, y, classes, average, names) for side in (trained_labels, existing_labels)]
        )

    bootstrap = {**stats.bootstrap_info(cfg), "average": average, "metrics": {}}
    if names:
        bootstrap["metrics"] = stats.paired_bootstrap(
            statistic,
            (*labels, target),
            names,
            resamples=cfg.bootstrap_resamples,
            confidence=cfg.confidence,
            seed=cfg.seed,
        )
    correct = [side == target for side in labels]
    return {"bootstrap": bootstrap, "mcnemar": stats.mcnemar(*correct, alpha=1 - cfg.confidence)}
