"""Data extension points and built-ins: the generic DataModule, split(), the bundled digits data set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from dsf_dist.config.schema import SplitConfig


@dataclass(frozen=True)
class Splits:
    """What split() returns and what an existing-model callable receives."""

    train: Dataset
    val: Dataset
    test: Dataset


def split_dataset(dataset: Dataset, fractions: SplitConfig, seed: int, test_set: Dataset | None = None) -> Splits:
    """Seeded random split, identical in every process and every later `dsf test` of the run."""
    import torch
    from torch.utils.data import random_split

    generator = torch.Generator().manual_seed(seed)
    if test_set is not None:
        train_share = fractions.train / (fractions.train + fractions.val)
        train, val = random_split(dataset, [train_share, 1 - train_share], generator=generator)
        return Splits(train, val, test_set)
    train, val, test = random_split(dataset, [fractions.train, fractions.val, fractions.test], generator=generator)
    return Splits(train, val, test)
