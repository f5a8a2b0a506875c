"""The gates of config.comparison, checked against a comparison report: each judges a metric's improvement
(trained - existing, or existing - trained where lower is better), so a threshold reads "at least this much
better"; `dsf run` and `dsf compare` exit 3 when one fails."""

from __future__ import annotations

from typing import Any

from dsf_dist.config.metrics import HIGHER_IS_BETTER
from dsf_dist.config.schema import ComparisonConfig


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
