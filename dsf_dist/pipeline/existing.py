"""Predictions of the existing model on the test split; the seed's execute_eval step."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsf_dist.config.schema import ExistingModelConfig
from dsf_dist.data import Splits
from dsf_dist.errors import DsfError
from dsf_dist.files import write_arrays
from dsf_dist.imports import load_object


def predict_with_callable(cfg: ExistingModelConfig, splits: Splits, out: Path, target: np.ndarray) -> None:
    """Rank zero only: call the user's function and save its predictions beside the test targets (the task's
    Task.test_targets)."""
    predict = load_object(cfg.target, "existing_model.target")
    preds = np.asarray(predict(splits, **cfg.kwargs))
    if len(preds) != len(target):
        raise DsfError(
            f"existing_model.target: {cfg.target} returned {len(preds)} predictions for "
            f"{len(target)} test samples; return one per sample of datasets.test, in order"
        )
    write_arrays(out, index=np.arange(len(target)), preds=preds, target=target)
