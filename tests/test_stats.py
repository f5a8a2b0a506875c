"""Paired statistics against independent references: scikit-learn's metrics, the binomial sum worked by hand,
and the normal approximation of a mean's standard error."""

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from dsf_dist.scoring.stats import class_metrics, mcnemar, paired_bootstrap, regression_errors

NAMES = ("accuracy", "precision", "recall", "f1")


def correctness(trained_only: int, existing_only: int, both: int = 5, neither: int = 3):
    """Right/wrong flags for two models with the given counts of each agreement pattern."""
    pattern = [(1, 0)] * trained_only + [(0, 1)] * existing_only + [(1, 1)] * both + [(0, 0)] * neither
    flags = np.array(pattern, dtype=bool)
    return flags[:, 0], flags[:, 1]


def test_mcnemar_matches_a_hand_worked_example():
    # 1 vs 9 discordant samples: p = 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * (1 + 10) / 1024.
    result = mcnemar(*correctness(1, 9), alpha=0.05)
    assert result["p_value"] == pytest.approx(22 / 1024, rel=1e-12)
    assert (result["trained_only_correct"], result["existing_only_correct"], result["discordant"]) == (1, 9, 10)
    assert result["significant"] and result["favours"] == "existing"


@pytest.mark.parametrize(("trained_only", "existing_only"), [(0, 6), (3, 4), (7, 2), (15, 30), (40, 41)])
def test_mcnemar_equals_the_two_sided_binomial_sum(trained_only, existing_only):
    n, k = trained_only + existing_only, min(trained_only, existing_only)
    by_hand = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    assert mcnemar(*correctness(trained_only, existing_only), alpha=0.05)["p_value"] == pytest.approx(by_hand)


def test_mcnemar_without_disagreements_is_not_significant():
    result = mcnemar(*correctness(0, 0), alpha=0.05)
    assert result["p_value"] == 1.0 and not result["significant"] and result["favours"] == "neither"


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_class_metrics_match_scikit_learn_row_by_row(average):
    rng = np.random.default_rng(1)
    target = rng.integers(0, 5, size=(6, 40))  # class 5 never occurs; some rows miss others too
    pred = np.where(rng.random((6, 40)) < 0.7, target, rng.integers(0, 6, size=(6, 40)))
    values = class_metrics(pred, target, 6, average, NAMES)
    assert values.shape == (4, 6)
    for row in range(6):
        y, p = target[row], pred[row]
        expected = [
            sk.accuracy_score(y, p),
            sk.precision_score(y, p, average=average, zero_division=0),
            sk.recall_score(y, p, average=average, zero_division=0),
            sk.f1_score(y, p, average=average, zero_division=0),
        ]
        np.testing.assert_allclose(values[:, row], expected, atol=1e-12)


def test_binary_metrics_take_class_one_as_positive_like_scikit_learn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=50)
    p = np.where(rng.random(50) < 0.8, y, 1 - y)
    values = class_metrics(p, y, 2, "binary", NAMES)
    expected = [sk.accuracy_score(y, p), sk.precision_score(y, p), sk.recall_score(y, p), sk.f1_score(y, p)]
    np.testing.assert_allclose(values, expected, atol=1e-12)


def test_regression_errors_average_to_scikit_learns_mse_and_mae():
    rng = np.random.default_rng(3)
    target, preds = rng.random((30, 8, 8)), rng.random((30, 8, 8))
    errors = regression_errors(preds, target)
    flat_t, flat_p = target.reshape(30, -1), preds.reshape(30, -1)
    assert errors["mse"].mean() == pytest.approx(sk.mean_squared_error(flat_t, flat_p))
    assert errors["mae"].mean() == pytest.approx(sk.mean_absolute_error(flat_t, flat_p))


def mean_difference(*arrays, axis=-1):
    return np.stack([values.mean(axis=axis) for values in arrays])


def accuracy_bootstrap(n: int, seed: int = 0, resamples: int = 1000):
    """Two models right 80 % and 75 % of the time, errors partly shared (paired data)."""
    rng = np.random.default_rng(100 + n)
    trained = rng.random(n) < 0.8
    existing = np.where(rng.random(n) < 0.6, trained, rng.random(n) < 0.75)
    result = paired_bootstrap(
        mean_difference,
        (trained.astype(float), existing.astype(float)),
        ["accuracy"],
        resamples=resamples,
        confidence=0.95,
        seed=seed,
    )
    return result["accuracy"], trained, existing


def test_bootstrap_interval_contains_the_difference_and_narrows_with_more_samples():
    small, trained, existing = accuracy_bootstrap(200)
    large, _, _ = accuracy_bootstrap(5000)
    for entry in (small, large):
        low, high = entry["difference_ci"]
        assert low <= entry["difference"] <= high
        assert entry["difference"] == pytest.approx(entry["trained"] - entry["existing"])
        assert entry["trained_ci"][0] <= entry["trained"] <= entry["trained_ci"][1]
    assert small["difference"] == pytest.approx(trained.mean() - existing.mean())
    width = lambda entry: entry["difference_ci"][1] - entry["difference_ci"][0]  # noqa: E731
    assert width(large) < width(small) / 3  # ~ 1 / sqrt(25) = 1/5 in theory


def test_bootstrap_width_agrees_with_the_normal_approximation():
    entry, trained, existing = accuracy_bootstrap(4000, resamples=2000)
    d = trained.astype(float) - existing.astype(float)
    normal_width = 2 * 1.959964 * d.std() / math.sqrt(len(d))
    width = entry["difference_ci"][1] - entry["difference_ci"][0]
    assert width == pytest.approx(normal_width, rel=0.1)


def test_bootstrap_is_seeded():
    assert accuracy_bootstrap(300, seed=7)[0] == accuracy_bootstrap(300, seed=7)[0]
    assert accuracy_bootstrap(300, seed=7)[0]["difference_ci"] != accuracy_bootstrap(300, seed=8)[0]["difference_ci"]


def test_identical_models_give_a_zero_interval():
    same = np.array([1.0, 0.0, 1.0, 1.0] * 10)
    entry = paired_bootstrap(mean_difference, (same, same), ["accuracy"], resamples=200, confidence=0.95, seed=0)
    assert entry["accuracy"]["difference_ci"] == [0.0, 0.0]


def test_one_sample_has_no_interval():
    one = np.array([1.0])
    entry = paired_bootstrap(mean_difference, (one, one), ["accuracy"], resamples=200, confidence=0.95, seed=0)
    assert entry["accuracy"]["difference_ci"] is None and entry["accuracy"]["difference"] == 0.0
