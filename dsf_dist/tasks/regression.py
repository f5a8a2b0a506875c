"""Regression (the seed's autoencoder, or any model that predicts values): mean squared error as the objective;
MSE and MAE of saved predictions; paired bootstrap intervals of both in the report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsf_dist.config.metrics import HIGHER_IS_BETTER
from dsf_dist.config.schema import ComparisonConfig, DsfConfig, MetricsConfig, ModelConfig
from dsf_dist.tasks.base import Task

if TYPE_CHECKING:
    import numpy as np

    from dsf_dist.data import Splits
    from dsf_dist.scoring.predictions import Predictions


class RegressionTask(Task):
    name = "regression"
    metrics = ("mse", "mae")
    objective = "mse"

    def output_size(self, model: ModelConfig, splits: Splits) -> int:
        _, target = splits.train[0]
        return target.numel()

    def score(
        self, preds: np.ndarray, target: np.ndarray, metrics: MetricsConfig, num_classes: int | None
    ) -> dict[str, Any]:
        import torch
        from torchmetrics.functional import mean_absolute_error, mean_squared_error

        results: dict[str, Any] = {"num_samples": int(len(target))}
        pred_t, target_t = torch.as_tensor(preds).float(), torch.as_tensor(target).float()
        if metrics.mse:
            results["mse"] = float(mean_squared_error(pred_t, target_t))
        if metrics.mae:
            results["mae"] = float(mean_absolute_error(pred_t, target_t))
        return results

    def add_to_report(
        self,
        report: dict[str, Any],
        cfg: DsfConfig,
        test_results: dict[str, Any],
        trained: Predictions,
        existing: Predictions,
    ) -> None:
        scalar = [metric for metric in report["differences"] if metric in HIGHER_IS_BETTER]
        report["statistics"] = regression_statistics(trained, existing, scalar, cfg.comparison)


def regression_statistics(
    trained: Predictions, existing: Predictions, metrics: list[str], cfg: ComparisonConfig
) -> dict[str, Any]:
    """Paired bootstrap intervals of MSE and MAE: per-sample errors resampled together for both models."""
    import numpy as np

    from dsf_dist.scoring import stats

    names = [metric for metric in RegressionTask.metrics if metric in metrics]
    errors = [stats.regression_errors(side.preds, side.target) for side in (trained, existing)]

    def statistic(*per_sample: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.stack([values.mean(axis=axis) for values in per_sample])

    bootstrap = {**stats.bootstrap_info(cfg), "metrics": {}}
    if names:
        data = [side[name] for side in errors for name in names]
        bootstrap["metrics"] = stats.paired_bootstrap(
            statistic, data, names, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=cfg.seed
        )
    return {"bootstrap": bootstrap}
