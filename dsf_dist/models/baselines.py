"""Existing models a team may already run, usable as `existing_model.target` callables.

Contract of such a callable: fn(datasets: dsf_dist.data.Splits, **kwargs) -> predictions for
datasets.test, in order: class labels (N,) or class scores (N, C) for classification, values for
regression. dsf scores them with the same metric code and on the same samples as the trained model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from dsf_dist.data import Splits


def as_arrays(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Stack a map-style (inputs, target) dataset into two arrays, flattening each input."""
    inputs, targets = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    return inputs.reshape(len(inputs), -1).numpy(), targets.numpy()


def logistic_regression(datasets: Splits, max_iter: int = 1000, C: float = 1.0, **kwargs: Any) -> np.ndarray:
    """The embedded default's existing model: scikit-learn logistic regression fit on the same train split."""
    from sklearn.linear_model import LogisticRegression

    train_x, train_y = as_arrays(datasets.train)
    test_x, _ = as_arrays(datasets.test)
    classifier = LogisticRegression(max_iter=max_iter, C=C, **kwargs).fit(train_x, train_y)
    return classifier.predict(test_x)


def pca_reconstruction(datasets: Splits, n_components: int = 3) -> np.ndarray:
    """An existing model for the autoencoder task: PCA with as many components as the code size."""
    from sklearn.decomposition import PCA

    train_x, _ = as_arrays(datasets.train)
    test_x, _ = as_arrays(datasets.test)
    pca = PCA(n_components=n_components).fit(train_x)
    return pca.inverse_transform(pca.transform(test_x))
