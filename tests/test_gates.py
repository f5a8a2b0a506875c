"""Gates: a planted regression trips them (exit 3), a planted improvement passes (exit 0), through the real CLI
on synthetic results folders; `dsf compare A B` refuses results of different samples; one end-to-end run."""

import json

import numpy as np
import pytest
from conftest import dsf, only_run_folder, results

from dsf_dist.comparison.report import build_report
from dsf_dist.config import load_config
from dsf_dist.config.schema import MetricsConfig
from dsf_dist.errors import ConfigError
from dsf_dist.files import write_arrays, write_json
from dsf_dist.scoring.predictions import Predictions
from dsf_dist.tasks import score

N, CLASSES = 400, 4
TARGET = np.random.default_rng(0).integers(0, CLASSES, size=N)


def labels_with_errors(rate: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wrong = rng.random(N) < rate
    return np.where(wrong, (TARGET + rng.integers(1, CLASSES, size=N)) % CLASSES, TARGET)


def write_results(folder, preds, target=TARGET, name="model"):
    """A results folder as `dsf test` leaves it: test.json scored by dsf's own metric code, and the predictions."""
    folder.mkdir(parents=True)
    write_json(folder / "test.json", {"model": name, **score(preds, target, "classification", MetricsConfig(), None)})
    write_arrays(folder / "test_predictions.npz", index=np.arange(len(target)), preds=preds, target=target)
    return folder


@pytest.fixture
def good_and_bad(tmp_path):
    good = write_results(tmp_path / "good", labels_with_errors(0.05, 1), name="good.ckpt")
    bad = write_results(tmp_path / "bad", labels_with_errors(0.20, 2), name="bad.ckpt")
    return good, bad


GATES = [
    "--set",
    "comparison.no_significant_regression=[accuracy, f1]",
    "--set",
    "comparison.min_absolute.accuracy=0.0",
]


def test_planted_regression_fails_the_gate_with_exit_3(good_and_bad, tmp_path):
    good, bad = good_and_bad
    done = dsf("compare", str(bad), str(good), *GATES, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "FAIL accuracy no_significant_regression" in done.stdout
    assert "FAIL accuracy min_absolute" in done.stdout and "gates: FAILED (3 of 3 failed)" in done.stdout
    out = bad / "compare-good"  # the default: a folder in A's results named after B
    report = json.loads((out / "comparison.json").read_text())
    assert report["gates"]["passed"] is False
    assert {check["gate"] for check in report["gates"]["checks"] if not check["passed"]} == {
        "no_significant_regression",
        "min_absolute",
    }
    assert report["statistics"]["mcnemar"]["favours"] == "existing"
    assert report["trained_model"] == "bad.ckpt" and report["existing_model"] == "good.ckpt"
    assert "**FAIL** accuracy `min_absolute`" in (out / "comparison.md").read_text()
    assert "FAIL" in (out / "comparison.html").read_text()


def test_planted_improvement_passes_with_exit_0(good_and_bad, tmp_path):
    good, bad = good_and_bad
    done = dsf("compare", str(good), str(bad), *GATES, "--out", "report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "gates: passed (all 3)" in done.stdout
    report = json.loads((tmp_path / "report" / "comparison.json").read_text())
    assert report["gates"]["passed"] is True
    low, high = report["statistics"]["bootstrap"]["metrics"]["accuracy"]["difference_ci"]
    assert 0 < low < report["differences"]["accuracy"]["absolute"] < high


def test_without_gates_a_worse_model_still_exits_0(good_and_bad, tmp_path):
    good, bad = good_and_bad
    done = dsf("compare", str(bad), str(good), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "gates: none configured" in done.stdout and "worse than the existing model" in done.stdout


def test_results_of_different_samples_are_refused_with_exit_2(good_and_bad, tmp_path):
    good, _ = good_and_bad
    other = write_results(tmp_path / "other", TARGET[::-1].copy(), target=TARGET[::-1].copy())
    done = dsf("compare", str(good), str(other), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not scored on the same test samples" in lines[0], done.stderr
    assert not (good / "compare-other").exists()


def regression_report(trained_noise: float, existing_noise: float, **comparison):
    rng = np.random.default_rng(4)
    target = rng.random((300, 16))
    trained = Predictions(np.arange(300), target + rng.normal(0, trained_noise, target.shape), target)
    existing = Predictions(np.arange(300), target + rng.normal(0, existing_noise, target.shape), target)
    overrides = ["model.task=regression", "metrics.mse=true", "metrics.mae=true", "metrics.accuracy=false"]
    overrides += [f"comparison.{key}={json.dumps(value)}" for key, value in comparison.items()]
    cfg = load_config(overrides=overrides)
    scored = [score(side.preds, target, "regression", cfg.metrics, None) for side in (trained, existing)]
    return build_report(cfg, *scored, trained, existing, ("trained", "existing"))


def test_regression_gates_know_lower_is_better():
    worse = regression_report(0.3, 0.2, no_significant_regression=["mse", "mae"], min_relative={"mse": 0.0})
    assert not worse["gates"]["passed"]
    assert all(not check["passed"] for check in worse["gates"]["checks"])
    assert "lies below 0" in worse["gates"]["checks"][1]["reason"]
    better = regression_report(0.2, 0.3, no_significant_regression=["mse", "mae"], min_relative={"mse": 0.2})
    assert better["gates"]["passed"], better["gates"]
    low, high = better["statistics"]["bootstrap"]["metrics"]["mse"]["difference_ci"]
    assert low < better["differences"]["mse"]["absolute"] < high < 0


def test_a_gate_on_a_metric_not_computed_fails_and_says_why():
    report = regression_report(0.2, 0.3, min_absolute={"accuracy": 0.0})
    (check,) = report["gates"]["checks"]
    assert not check["passed"] and "enable metrics.accuracy" in check["reason"]


def test_gate_config_is_checked_at_load_time_in_one_line():
    with pytest.raises(ConfigError, match="^comparison.min_absolute: 'acc' is not a metric dsf can gate; use"):
        load_config(overrides=["comparison.min_absolute.acc=0.01"])
    with pytest.raises(ConfigError, match="^comparison.no_significant_regression: a metric is listed twice"):
        load_config(overrides=["comparison.no_significant_regression=[f1, f1]"])
    with pytest.raises(ConfigError, match="^comparison: gates are set but enabled is false"):
        load_config(overrides=["comparison.enabled=false", "comparison.min_absolute.f1=0"])


@pytest.mark.slow
@pytest.mark.smoke
def test_run_exits_3_on_a_failed_gate_and_writes_every_report(tmp_path):
    """The one end-to-end run: no model can gain 1.0 accuracy, so the gate fails; the reports are all there."""
    done = dsf(
        "run",
        "--output",
        "runs",
        "--set",
        "trainer.max_epochs=2",
        "--set",
        "comparison.min_absolute.accuracy=1.0",
        cwd=tmp_path,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    assert "FAIL accuracy min_absolute" in done.stdout
    run = only_run_folder(tmp_path / "runs")
    for name in ("comparison.json", "comparison.md", "comparison.html", *results(run, "comparison")["plots"]):
        assert (run / "results" / name).stat().st_size > 0, name
    assert len(results(run, "comparison")["plots"]) == 3  # metrics, confusion matrices, training curves

    # The same run compared again without the gate: exit 0, the seed's dictionary unchanged.
    again = dsf("compare", str(run), "--set", "comparison.min_absolute={}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    comparison = results(run, "comparison")
    assert set(comparison["comparison"]) == {"accuracy", "precision", "recall", "f1", "confusion_matrix"}
    assert comparison["gates"] == {"configured": False, "passed": True, "checks": []}
