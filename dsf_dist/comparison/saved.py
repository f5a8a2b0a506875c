"""`dsf compare A B`: two saved runs or results folders compared without re-running a model. A results folder is
data: nothing named in it is imported."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsf_dist import files
from dsf_dist.comparison.report import build_report
from dsf_dist.config import load_config
from dsf_dist.config.schema import DsfConfig, MetricsConfig
from dsf_dist.errors import RunFolderError
from dsf_dist.scoring.predictions import Predictions, require_same_samples
from dsf_dist.tasks import infer_task


@dataclass(frozen=True)
class SavedResults:
    """A run folder, or a results folder, as `dsf compare A B` reads it: test.json and test_predictions.npz."""

    results: Path
    run: Path | None
    scores: dict[str, Any]
    predictions: Predictions

    @classmethod
    def open(cls, path: str | Path) -> SavedResults:
        path = Path(path)
        results = path / "results" if (path / "results" / "test.json").is_file() else path
        if not (results / "test.json").is_file():
            raise RunFolderError(
                f"{path}: no test.json in it or in its results/; give a run folder or a results folder `dsf test` wrote"
            )
        run = results.parent if results.name == "results" and (results.parent / "config.yaml").is_file() else None
        predictions = Predictions.load(results / "test_predictions.npz")
        return cls(results, run, files.read_json(results / "test.json"), predictions)

    @property
    def name(self) -> str:
        folder = self.run or (self.results.parent if self.results.name == "results" else self.results)
        return re.sub(r"[^A-Za-z0-9._-]", "_", folder.resolve().name) or "results"

    @property
    def training_log(self) -> Path | None:
        log = self.run / "logs" / "metrics.csv" if self.run else None
        return log if log and log.is_file() else None


def saved_config(candidate: SavedResults, baseline: SavedResults, overrides: list[str]) -> DsfConfig:
    """The candidate run's config.yaml; for bare results folders the embedded default, with the task and
    the metric flags read off the two test.json files. `--set` overrides apply last either way. Not checked
    against this machine: results are data, compared wherever they were copied to, without the run's code."""
    if candidate.run is not None:
        return load_config(candidate.run / "config.yaml", overrides, check_machine=False)
    both = set(candidate.scores) & set(baseline.scores)
    flags = [name for name, field in MetricsConfig.model_fields.items() if field.annotation is bool]
    inferred = [f"model.task={infer_task(both).name}"]
    inferred += [f"metrics.{flag}={str(flag in both).lower()}" for flag in flags]
    return load_config(None, [*inferred, *overrides], check_machine=False)


def compare_saved(candidate: SavedResults, baseline: SavedResults, cfg: DsfConfig) -> dict[str, Any]:
    """`dsf compare A B`: A's test results as the trained model, B's as the existing one; nothing re-runs."""
    require_same_samples(candidate.predictions, baseline.predictions, str(candidate.results), str(baseline.results))
    names = (
        str(candidate.scores.get("model", candidate.results)),
        str(baseline.scores.get("model", baseline.results)),
    )
    return build_report(cfg, candidate.scores, baseline.scores, candidate.predictions, baseline.predictions, names)
