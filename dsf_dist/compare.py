"""The seed's Comparison: trained-model test results against the existing model's, metric by metric."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dsf_dist.metrics import HIGHER_IS_BETTER


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
