"""Per-class numbers against scikit-learn, and the report files: json, markdown, html with its PNG plots."""

import json

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from dsf_dist.comparison.render import comparison_markdown, write_reports
from dsf_dist.comparison.report import build_report
from dsf_dist.config import load_config
from dsf_dist.scoring.predictions import Predictions
from dsf_dist.tasks import score

PNG = b"\x89PNG\r\n\x1a\n"
METRICS_CSV = """epoch,step,train_loss_epoch,train_loss_step,val_acc,val_loss
0,9,,2.1,,
0,19,,1.5,0.72,1.52
0,19,2.0,,,
1,29,,0.9,,
1,39,,0.6,0.85,0.57
1,39,1.0,,,
"""


def classification_report(classes=5, n=250, overrides=(), trained_scores=True):
    rng = np.random.default_rng(5)
    target = rng.integers(0, classes - 1, size=n)  # the last class never occurs in the test split
    noisy = lambda rate: np.where(rng.random(n) < rate, rng.integers(0, classes, size=n), target)  # noqa: E731
    trained_labels, existing_labels = noisy(0.15), noisy(0.3)
    # The trained model saves class scores, the existing one labels, as the pipeline allows.
    trained_preds = (
        np.eye(classes)[trained_labels] + rng.random((n, classes)) * 0.1 if trained_scores else trained_labels
    )
    cfg = load_config(overrides=list(overrides))
    trained = Predictions(np.arange(n), trained_preds, target)
    existing = Predictions(np.arange(n), existing_labels, target)
    scored = [score(side.preds, target, "classification", cfg.metrics, classes) for side in (trained, existing)]
    report = build_report(cfg, *scored, trained, existing, ("trained.ckpt", "pkg.mod:existing"))
    return report, target, trained_labels, existing_labels


def test_per_class_numbers_equal_scikit_learns():
    report, target, trained, existing = classification_report()
    assert report["classes"] == ["0", "1", "2", "3", "4"]
    for side, labels in (("trained", trained), ("existing", existing)):
        precision, recall, f1, support = precision_recall_fscore_support(
            target, labels, labels=range(5), zero_division=0
        )
        for i, row in enumerate(report["per_class"]):
            assert row["support"] == support[i]
            assert row["precision"][side] == pytest.approx(precision[i], abs=1e-12)
            assert row["recall"][side] == pytest.approx(recall[i], abs=1e-12)
            assert row["f1"][side] == pytest.approx(f1[i], abs=1e-12)
    row = report["per_class"][1]
    assert row["f1"]["difference"] == pytest.approx(row["f1"]["trained"] - row["f1"]["existing"])


def test_bootstrap_point_estimates_equal_the_scored_metrics():
    report, *_ = classification_report(overrides=["metrics.average=weighted"])
    bootstrap = report["statistics"]["bootstrap"]
    assert bootstrap["average"] == "weighted" and set(bootstrap["metrics"]) == {"accuracy", "precision", "recall", "f1"}
    for metric, entry in bootstrap["metrics"].items():
        pair = report["comparison"][metric]
        assert entry["trained"] == pytest.approx(pair["trained"], abs=1e-6)
        assert entry["existing"] == pytest.approx(pair["eval"], abs=1e-6)
        low, high = entry["difference_ci"]
        assert low <= entry["difference"] <= high


def test_seed_dictionary_keeps_its_shape():
    report, *_ = classification_report()
    assert set(report["comparison"]) == {"accuracy", "precision", "recall", "f1", "confusion_matrix"}
    assert set(report["comparison"]["accuracy"]) == {"trained", "eval"}


def test_reports_are_written_with_plots_that_exist(tmp_path):
    report, *_ = classification_report(overrides=["comparison.class_names=[zero, one, two, three, '<four>']"])
    log = tmp_path / "metrics.csv"
    log.write_text(METRICS_CSV)
    written = write_reports(tmp_path / "results", report, [("trained", log)])
    names = {path.name for path in written}
    assert names == {
        "comparison.json",
        "comparison.md",
        "comparison.html",
        "metrics.png",
        "confusion_matrices.png",
        "training_curves.png",
    }
    for path in written:
        assert path.stat().st_size > 0, path
        if path.suffix == ".png":
            assert path.read_bytes().startswith(PNG)
    page = (tmp_path / "results" / "comparison.html").read_text()
    for name in ("metrics.png", "confusion_matrices.png", "training_curves.png"):
        assert f'src="{name}"' in page
    assert "&lt;four&gt;" in page and "<four>" not in page  # class names are escaped
    saved = json.loads((tmp_path / "results" / "comparison.json").read_text())
    assert saved["plots"] == ["metrics.png", "confusion_matrices.png", "training_curves.png"]
    assert saved["classes"][4] == "<four>"


def test_markdown_has_the_interval_mcnemar_and_per_class_table():
    report, *_ = classification_report(overrides=["comparison.min_absolute.f1=0.5"])
    text = comparison_markdown(report)
    assert text.startswith("# Comparison: trained vs existing model\n\n**Gates: FAILED (1 of 1 failed)**")
    assert "- **FAIL** f1 `min_absolute`: f1 improvement +" in text and "required >= +0.5000" in text
    assert "| metric | trained | existing | difference | 95% CI of difference | relative |" in text
    assert "McNemar's test (exact binomial, two-sided)" in text
    assert "## Per-class precision, recall and F1" in text and text.count("<details>") == 2


def test_mismatched_class_names_fall_back_to_indices_with_a_note():
    report, *_ = classification_report(overrides=["comparison.class_names=[a, b]"])
    assert report["classes"] == ["0", "1", "2", "3", "4"]
    assert report["notes"] == ["comparison.class_names has 2 names for 5 classes; showing class indices"]


def test_binary_and_regression_reports_render(tmp_path):
    rng = np.random.default_rng(6)
    target = rng.integers(0, 2, size=80)
    flip = lambda rate: np.where(rng.random(80) < rate, 1 - target, target)  # noqa: E731
    cfg = load_config()
    sides = [Predictions(np.arange(80), flip(rate), target) for rate in (0.1, 0.2)]
    scored = [score(side.preds, target, "classification", cfg.metrics, 2) for side in sides]
    binary = build_report(cfg, *scored, *sides, ("a", "b"))
    assert binary["statistics"]["bootstrap"]["average"] == "binary"
    assert set(binary["comparison"]["confusion_matrix"]["trained"]) == {"tp", "tn", "fp", "fn"}
    written = write_reports(tmp_path / "binary", binary, [])
    assert {path.name for path in written} >= {"metrics.png", "confusion_matrices.png"}

    values = rng.random((60, 4))
    cfg = load_config(overrides=["model.task=regression", "metrics.mse=true", "metrics.mae=true"])
    sides = [Predictions(np.arange(60), values + rng.normal(0, s, values.shape), values) for s in (0.1, 0.2)]
    scored = [score(side.preds, values, "regression", cfg.metrics, None) for side in sides]
    regression = build_report(cfg, *scored, *sides, ("a", "b"))
    assert "per_class" not in regression and "mcnemar" not in regression["statistics"]
    assert set(regression["statistics"]["bootstrap"]["metrics"]) == {"mse", "mae"}
    written = write_reports(tmp_path / "regression", regression, [])
    assert {path.name for path in written if path.suffix == ".png"} == {"metrics.png"}
    assert "mse (lower is better)" in comparison_markdown(regression)
