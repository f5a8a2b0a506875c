"""The data: a dataset, split() into train / validation / test, and the data module dsf trains and tests on.

config.yaml names the data module (data.datamodule: data:DigitsDataModule) and its arguments
(data.datamodule_kwargs). Put your own data in load_dataset(); change split() if your data has a split of its own
(by time, by customer, a fixed test file). Keep it seeded: every process of a distributed run, and every later
`dsf test` of a run, must see the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset, TensorDataset, random_split

from dsf_dist.data import Splits
from dsf_dist.data.datamodule import DataModule


def load_dataset(path: str | None = None) -> Dataset:
    """(input, target) pairs, the target a vector of values. Here scikit-learn's bundled 8x8 digits (1,797 images,
    no download) to reconstruct: 64 pixels scaled to [0, 1] are both the input and the target, as for the seed's
    autoencoder. Read your own data from `path` instead."""
    digits = load_digits()
    pixels = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    return TensorDataset(pixels, pixels)


def split(dataset: Dataset, fractions: Sequence[float], seed: int) -> Splits:
    """The seed's split(): train, validation and test sets, drawn at random with a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    train, val, test = random_split(dataset, list(fractions), generator=generator)
    return Splits(train, val, test)


class DigitsDataModule(DataModule):
    """The seed's <project>DataModule: the three sets in, Lightning's data loaders out (dsf's DataModule makes
    them; its test loader gives each test sample to exactly one process, so distributed test metrics are exact)."""

    def __init__(
        self,
        path: str | None = None,
        fractions: Sequence[float] = (0.7, 0.15, 0.15),
        seed: int = 42,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        splits = split(load_dataset(path), fractions, seed)
        super().__init__(splits.train, splits.val, splits.test, batch_size, num_workers)
