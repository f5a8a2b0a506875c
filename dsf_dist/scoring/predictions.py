"""One model's per-sample predictions on the test split, as results/*_predictions.npz holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsf_dist import files
from dsf_dist.errors import RunFolderError

REQUIRED = ("index", "preds", "target")


@dataclass(frozen=True)
class Predictions:
    index: np.ndarray
    preds: np.ndarray
    target: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """Arrays a task keeps beside them, e.g. token classification's `sentence` (the test sentence of each word)."""

    @classmethod
    def load(cls, path: Path) -> Predictions:
        if not path.is_file():
            raise RunFolderError(f"{path}: per-sample predictions missing; run `dsf test` and `dsf eval` to write them")
        arrays = files.read_arrays(path)
        missing = sorted(set(REQUIRED) - set(arrays))
        if missing:
            raise RunFolderError(f"{path}: no {', '.join(missing)} array; save index, preds and target")
        if len(arrays["target"]) == 0:
            raise RunFolderError(f"{path}: no test samples; test on a non-empty test split")
        extra = {key: value for key, value in arrays.items() if key not in REQUIRED}
        return cls(arrays["index"], arrays["preds"], arrays["target"], extra)


def require_same_samples(trained: Predictions, existing: Predictions, trained_at: str, existing_at: str) -> None:
    """Paired statistics only mean something on the same samples, in the same order."""
    if not (np.array_equal(trained.index, existing.index) and np.array_equal(trained.target, existing.target)):
        raise RunFolderError(
            f"{trained_at} and {existing_at} were not scored on the same test samples (index or target differ); "
            "compare results of the same test split"
        )
