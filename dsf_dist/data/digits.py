"""The embedded default's data: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes, no download)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset


def digits(path: str | None = None, reconstruct: bool = False) -> TensorDataset:
    """Pixels scaled to [0, 1]; targets are the digit, or the pixels themselves for the autoencoder."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    inputs = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    targets = inputs if reconstruct else torch.tensor(bunch.target, dtype=torch.long)
    return TensorDataset(inputs, targets)
