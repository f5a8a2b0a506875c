import numpy as np
import pytest
from sklearn import metrics as sk

from dsf_dist.comparison.render import comparison_markdown
from dsf_dist.comparison.report import Comparison, comparison_report, differences
from dsf_dist.config.schema import MetricsConfig
from dsf_dist.tasks import score

rng = np.random.default_rng(0)
TARGET = rng.integers(0, 4, size=101)
SCORES = rng.random((101, 4)) + np.eye(4)[TARGET] * 0.6  # mostly right, some mistakes


def test_multiclass_scores_match_scikit_learn():
    results = score(SCORES, TARGET, "classification", MetricsConfig(), num_classes=4)
    labels = SCORES.argmax(1)
    assert results["num_samples"] == 101
    assert results["accuracy"] == pytest.approx(sk.accuracy_score(TARGET, labels), abs=1e-6)
    assert results["precision"] == pytest.approx(sk.precision_score(TARGET, labels, average="macro"), abs=1e-6)
    assert results["recall"] == pytest.approx(sk.recall_score(TARGET, labels, average="macro"), abs=1e-6)
    assert results["f1"] == pytest.approx(sk.f1_score(TARGET, labels, average="macro"), abs=1e-6)
    assert results["confusion_matrix"] == sk.confusion_matrix(TARGET, labels).tolist()


def test_labels_and_scores_score_alike():
    cfg = MetricsConfig(average="weighted")
    from_scores = score(SCORES, TARGET, "classification", cfg, num_classes=4)
    assert score(SCORES.argmax(1), TARGET, "classification", cfg, num_classes=4) == from_scores


def test_confusion_matrix_keeps_classes_absent_from_the_test_set():
    results = score(np.array([0, 1, 1]), np.array([0, 1, 0]), "classification", MetricsConfig(), num_classes=5)
    assert np.array(results["confusion_matrix"]).shape == (5, 5)


def test_binary_uses_the_seeds_tp_tn_fp_fn_form():
    target, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    results = score(labels, target, "classification", MetricsConfig(), num_classes=2)
    assert results["confusion_matrix"] == {"tp": 2, "tn": 1, "fp": 1, "fn": 1}
    assert results["precision"] == pytest.approx(2 / 3)


def test_regression_scores():
    preds, target = np.array([[1.0, 2.0]]), np.array([[0.0, 4.0]])
    results = score(preds, target, "regression", MetricsConfig(mse=True, mae=True), num_classes=None)
    assert results["mse"] == pytest.approx(2.5) and results["mae"] == pytest.approx(1.5)


def test_comparison_has_the_seeds_shape_for_enabled_metrics_only():
    test = {"accuracy": 0.9, "precision": 0.8, "f1": 0.7, "confusion_matrix": [[1]], "num_samples": 3}
    existing = {"accuracy": 0.8, "precision": 0.9, "f1": 0.7, "confusion_matrix": [[2]], "num_samples": 3}
    result = Comparison(
        test, existing, {"accuracy": True, "precision": True, "f1": False, "confusion_matrix": True, "average": "macro"}
    ).compare()
    assert result == {
        "accuracy": {"trained": 0.9, "eval": 0.8},
        "precision": {"trained": 0.8, "eval": 0.9},
        "confusion_matrix": {"trained": [[1]], "eval": [[2]]},
    }


def test_comparison_without_results_says_so():
    assert Comparison(None, {"accuracy": 1.0}, MetricsConfig()).compare() == "No test results found."


def test_differences_know_which_direction_is_better():
    diffs = differences({"accuracy": {"trained": 0.9, "eval": 0.8}, "mse": {"trained": 0.2, "eval": 0.1}})
    assert diffs["accuracy"]["absolute"] == pytest.approx(0.1)
    assert diffs["accuracy"]["relative"] == pytest.approx(0.125)
    assert diffs["accuracy"]["trained_better"] is True
    assert diffs["mse"]["trained_better"] is False


def test_markdown_report_lists_metrics_and_both_matrices():
    comparison = {
        "accuracy": {"trained": 0.9, "eval": 0.8},
        "confusion_matrix": {"trained": [[1, 0], [0, 1]], "eval": [[0, 1], [1, 0]]},
    }
    text = comparison_markdown(comparison_report(comparison, "accuracy", "best.ckpt", "baseline"))
    assert "| accuracy | 0.9000 | 0.8000 | +0.1000 | n/a | +12.50% |" in text  # no predictions, no interval
    assert "trained model is better than the existing model on accuracy" in text
    assert text.count("<summary>Confusion matrix, ") == 2
