"""The seed's Comparison, and what a release decision needs beside it: the task's parts (per-class numbers,
paired statistics on the per-sample predictions) and the gates of config.comparison. Rendering is render.py's."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dsf_dist.comparison.gates import evaluate_gates
from dsf_dist.config.metrics import HIGHER_IS_BETTER
from dsf_dist.config.schema import DsfConfig
from dsf_dist.scoring.predictions import Predictions
from dsf_dist.tasks import Task, task_for


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


def build_report(
    cfg: DsfConfig,
    test_results: dict[str, Any],
    eval_results: dict[str, Any],
    trained: Predictions,
    existing: Predictions,
    names: tuple[str, str],
    task: Task | None = None,
) -> dict[str, Any]:
    """comparison.json: the seed's dictionary and differences, the task's parts (per-class numbers, paired
    statistics), and the gates. `task` defaults to the config's."""
    comparison = Comparison(test_results, eval_results, cfg.metrics).compare()
    report = comparison_report(comparison, cfg.comparison.primary_metric, *names)
    report["num_samples"] = int(len(trained.target))
    report["notes"] = []
    (task or task_for(cfg)).add_to_report(report, cfg, test_results, trained, existing)
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
