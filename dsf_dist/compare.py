"""The seed's Comparison, and what a release decision needs beside it: per-class numbers, paired statistics on
the per-sample predictions, and the gates of config.comparison. Rendering is dsf_dist/reports.py's job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from dsf_dist import io, stats
from dsf_dist.config.schema import ComparisonConfig, DsfConfig, MetricsConfig
from dsf_dist.errors import RunFolderError
from dsf_dist.stats import HIGHER_IS_BETTER


class Comparison:
    def __init__(
        self,
        test_results: dict[str, Any] | None,
        eval_results: dict[str, Any] | None,
        metrics_config: BaseModel | dict[str, Any],
    ) -> None:
        self.test_results = test_results
        self.eval_results = eval_results
        flags = metrics_config.model_dump() if isinstance(metrics_config, BaseModel) else dict(metrics_config)
        # Only the boolean flags name metrics; other keys (average) say how to compute them.
        self.metrics = {name: on for name, on in flags.items() if isinstance(on, bool)}
        self.comparison_results: dict[str, Any] | None = None

    def compare(self) -> dict[str, Any] | str:
        """{metric: {'trained': ..., 'eval': ...}} for each enabled metric both sides have (the seed's shape)."""
        if self.test_results is None or self.eval_results is None:
            return "No test results found."
        self.comparison_results = {
            metric: {"trained": self.test_results[metric], "eval": self.eval_results[metric]}
            for metric, enabled in self.metrics.items()
            if enabled and metric in self.test_results and metric in self.eval_results
        }
        return self.comparison_results


def differences(comparison: dict[str, Any]) -> dict[str, dict[str, float | bool | None]]:
    """For scalar metrics: trained - eval, relative to eval, and whether the trained model is better."""
    out: dict[str, dict[str, float | bool | None]] = {}
    for metric, pair in comparison.items():
        trained, existing = pair["trained"], pair["eval"]
        if not isinstance(trained, (int, float)) or not isinstance(existing, (int, float)):
            continue
        delta = float(trained) - float(existing)
        higher = HIGHER_IS_BETTER.get(metric, True)
        out[metric] = {
            "absolute": delta,
            "relative": delta / abs(existing) if existing else None,
            "trained_better": delta > 0 if higher else delta < 0,
        }
    return out


def comparison_report(comparison: dict[str, Any], primary: str, trained: str, existing: str) -> dict[str, Any]:
    """comparison.json's core: the seed's dictionary under 'comparison', differences and provenance beside it."""
    return {
        "comparison": comparison,
        "differences": differences(comparison),
        "primary_metric": primary,
        "trained_model": trained,
        "existing_model": existing,
    }


@dataclass(frozen=True)
class Predictions:
    """One model's per-sample predictions on the test split, as results/*_predictions.npz holds them."""

    index: np.ndarray
    preds: np.ndarray
    target: np.ndarray
    sentence: np.ndarray | None = None
    """Token classification: the test sentence each word (sample) belongs to."""

    @classmethod
    def load(cls, path: Path) -> Predictions:
        if not path.is_file():
            raise RunFolderError(f"{path}: per-sample predictions missing; run `dsf test` and `dsf eval` to write them")
        arrays = io.read_arrays(path)
        missing = sorted({"index", "preds", "target"} - set(arrays))
        if missing:
            raise RunFolderError(f"{path}: no {', '.join(missing)} array; save index, preds and target")
        if len(arrays["target"]) == 0:
            raise RunFolderError(f"{path}: no test samples; test on a non-empty test split")
        return cls(arrays["index"], arrays["preds"], arrays["target"], arrays.get("sentence"))


def require_same_samples(trained: Predictions, existing: Predictions, trained_at: str, existing_at: str) -> None:
    """Paired statistics only mean something on the same samples, in the same order."""
    if not (np.array_equal(trained.index, existing.index) and np.array_equal(trained.target, existing.target)):
        raise RunFolderError(
            f"{trained_at} and {existing_at} were not scored on the same test samples (index or target differ); "
            "compare results of the same test split"
        )


def build_report(
    cfg: DsfConfig,
    test_results: dict[str, Any],
    eval_results: dict[str, Any],
    trained: Predictions,
    existing: Predictions,
    names: tuple[str, str],
) -> dict[str, Any]:
    """comparison.json: the seed's dictionary and differences, per-class numbers, paired statistics, gates."""
    comparison = Comparison(test_results, eval_results, cfg.metrics).compare()
    report = comparison_report(comparison, cfg.comparison.primary_metric, *names)
    report["num_samples"] = int(len(trained.target))
    report["notes"] = []
    scalar = [metric for metric in report["differences"] if metric in HIGHER_IS_BETTER]
    if cfg.model.task == "regression":
        report["statistics"] = regression_statistics(trained, existing, scalar, cfg.comparison)
    else:
        classes = count_classes(cfg, test_results, trained, existing)
        labels = test_results.get("labels") if cfg.model.task == "token_classification" else None
        names = (
            cfg.comparison
            if cfg.comparison.class_names or not labels
            else cfg.comparison.model_copy(update={"class_names": labels})
        )
        report["classes"] = class_names(names, classes, report["notes"])
        report["per_class"] = per_class_table(trained, existing, report["classes"])
        average = "binary" if classes == 2 else cfg.metrics.average
        report["statistics"] = classification_statistics(trained, existing, scalar, classes, average, cfg.comparison)
        if labels:
            from dsf_dist.entities import token_report

            token_report(report, trained, existing, labels, cfg.comparison)
    report["gates"] = evaluate_gates(report, cfg.comparison)
    return report


def scalar_report(
    cfg: DsfConfig, test_results: dict[str, Any], eval_results: dict[str, Any], names: tuple[str, str]
) -> dict[str, Any]:
    """Without per-sample predictions on both sides (a test_step that only logs its metrics): the seed's
    comparison, differences and threshold gates; no intervals, McNemar or per-class table can be computed."""
    comparison = Comparison(test_results, eval_results, cfg.metrics).compare()
    report = comparison_report(comparison, cfg.comparison.primary_metric, *names)
    report["notes"] = [
        "No per-sample predictions (a test_step that logs its metrics instead of returning preds and target): "
        "no confidence intervals, McNemar test or per-class table; logged metrics are as exact as the module's "
        "own reduction across ranks."
    ]
    report["gates"] = evaluate_gates(report, cfg.comparison)
    return report


def count_classes(cfg: DsfConfig, results: dict[str, Any], *predictions: Predictions) -> int:
    """The class count the scores used (the confusion matrix's size), widened to every label that occurs."""
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


def _bootstrap_info(cfg: ComparisonConfig) -> dict[str, Any]:
    return {
        "method": f"paired bootstrap, {stats.BOOTSTRAP_METHOD} interval",
        "resamples": cfg.bootstrap_resamples,
        "confidence": cfg.confidence,
        "seed": cfg.seed,
    }


def classification_statistics(
    trained: Predictions, existing: Predictions, metrics: list[str], classes: int, average: str, cfg: ComparisonConfig
) -> dict[str, Any]:
    names = [metric for metric in stats.CLASS_METRICS if metric in metrics]
    labels = [stats.labels_of(side.preds) for side in (trained, existing)]
    target = trained.target.astype(np.int64)

    def statistic(trained_labels: np.ndarray, existing_labels: np.ndarray, y: np.ndarray, axis: int = -1):
        return np.concatenate(
            [stats.class_metrics(side, y, classes, average, names) for side in (trained_labels, existing_labels)]
        )

    bootstrap = {**_bootstrap_info(cfg), "average": average, "metrics": {}}
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


def regression_statistics(
    trained: Predictions, existing: Predictions, metrics: list[str], cfg: ComparisonConfig
) -> dict[str, Any]:
    names = [metric for metric in stats.REGRESSION_METRICS if metric in metrics]
    errors = [stats.regression_errors(side.preds, side.target) for side in (trained, existing)]

    def statistic(*per_sample: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.stack([values.mean(axis=axis) for values in per_sample])

    bootstrap = {**_bootstrap_info(cfg), "metrics": {}}
    if names:
        data = [side[name] for side in errors for name in names]
        bootstrap["metrics"] = stats.paired_bootstrap(
            statistic, data, names, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=cfg.seed
        )
    return {"bootstrap": bootstrap}


# -- gates ------------------------------------------------------------------------------------------


def evaluate_gates(report: dict[str, Any], cfg: ComparisonConfig) -> dict[str, Any]:
    """Each configured gate, checked: {'configured', 'passed', 'checks': [{metric, gate, passed, reason}, ...]}."""
    checks = [_threshold_gate(report, metric, "min_absolute", value) for metric, value in cfg.min_absolute.items()]
    checks += [_threshold_gate(report, metric, "min_relative", value) for metric, value in cfg.min_relative.items()]
    checks += [_significance_gate(report, metric, cfg) for metric in cfg.no_significant_regression]
    return {"configured": bool(checks), "passed": all(check["passed"] for check in checks), "checks": checks}


def _check(metric: str, gate: str, passed: bool, reason: str, **values: Any) -> dict[str, Any]:
    return {"metric": metric, "gate": gate, "passed": passed, "reason": reason, **values}


def _threshold_gate(report: dict[str, Any], metric: str, gate: str, threshold: float) -> dict[str, Any]:
    pair = report["comparison"].get(metric)
    if metric not in report["differences"] or pair is None:
        return _check(metric, gate, False, _not_computed(metric), threshold=threshold, observed=None)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    improvement = sign * (float(pair["trained"]) - float(pair["eval"]))
    if gate == "min_absolute":
        passed = improvement >= threshold
        reason = f"{metric} improvement {improvement:+.4f}, required >= {threshold:+.4f}"
        return _check(metric, gate, passed, reason, threshold=threshold, observed=improvement)
    if float(pair["eval"]) == 0:
        reason = f"the existing model's {metric} is 0, so a relative change is undefined; use min_absolute"
        return _check(metric, gate, False, reason, threshold=threshold, observed=None)
    relative = improvement / abs(float(pair["eval"]))
    reason = f"{metric} relative improvement {relative:+.2%}, required >= {threshold:+.2%}"
    return _check(metric, gate, relative >= threshold, reason, threshold=threshold, observed=relative)


def _significance_gate(report: dict[str, Any], metric: str, cfg: ComparisonConfig) -> dict[str, Any]:
    gate = "no_significant_regression"
    entry = report.get("statistics", {}).get("bootstrap", {}).get("metrics", {}).get(metric)
    if entry is None:
        return _check(metric, gate, False, _not_computed(metric), observed=None)
    if entry["difference_ci"] is None:
        return _check(
            metric, gate, False, f"{metric}: no confidence interval (fewer than 2 test samples)", observed=None
        )
    low, high = entry["difference_ci"]
    if not HIGHER_IS_BETTER[metric]:
        low, high = -high, -low
    level = f"{cfg.confidence:.0%}"
    failures = []
    if high < 0:
        failures.append(f"the {level} CI of the {metric} improvement [{low:+.4f}, {high:+.4f}] lies below 0")
    mcnemar = report["statistics"].get("mcnemar")
    if metric == "accuracy" and mcnemar and mcnemar["significant"] and mcnemar["favours"] == "existing":
        failures.append(
            f"McNemar p = {mcnemar['p_value']:.3g} < {mcnemar['alpha']:.3g} favours the existing model "
            f"(right on {mcnemar['existing_only_correct']} samples the trained model missed, "
            f"vs {mcnemar['trained_only_correct']})"
        )
    reason = (
        "; ".join(failures)
        if failures
        else f"no significant {metric} regression ({level} CI of the improvement [{low:+.4f}, {high:+.4f}])"
    )
    return _check(metric, gate, not failures, reason, observed=[low, high])


def _not_computed(metric: str) -> str:
    return f"{metric} was not computed for both models; enable metrics.{metric} or remove the gate"


# -- `dsf compare A B`: two saved results folders ----------------------------------------------------


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
        return cls(results, run, io.read_json(results / "test.json"), predictions)

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
    the metric flags read off the two test.json files. `--set` overrides apply last either way."""
    from dsf_dist.config import load_config

    if candidate.run is not None:
        return load_config(candidate.run / "config.yaml", overrides)
    both = set(candidate.scores) & set(baseline.scores)
    regression = bool(both & set(stats.REGRESSION_METRICS)) and not both & {*stats.CLASS_METRICS, "confusion_matrix"}
    flags = [name for name, field in MetricsConfig.model_fields.items() if field.annotation is bool]
    inferred = [f"model.task={'regression' if regression else 'classification'}"]
    inferred += [f"metrics.{flag}={str(flag in both).lower()}" for flag in flags]
    return load_config(None, [*inferred, *overrides])


def compare_saved(candidate: SavedResults, baseline: SavedResults, cfg: DsfConfig) -> dict[str, Any]:
    """`dsf compare A B`: A's test results as the trained model, B's as the existing one; nothing re-runs."""
    require_same_samples(candidate.predictions, baseline.predictions, str(candidate.results), str(baseline.results))
    names = (
        str(candidate.scores.get("model", candidate.results)),
        str(baseline.scores.get("model", baseline.results)),
    )
    return build_report(cfg, candidate.scores, baseline.scores, candidate.predictions, baseline.predictions, names)
