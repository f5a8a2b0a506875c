"""The seed's generic DataModule: train / val / test datasets in, Lightning loaders out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from dsf_dist.data.samplers import ExactDistributedSampler


class DataModule(pl.LightningDataModule):
    def __init__(
        self,
        train_set: Dataset,
        val_set: Dataset,
        test_set: Dataset,
        batch_size: int,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ):
        super().__init__()
        self.collate_fn = collate_fn  # None: torch's default; token batches pad to their longest sentence
        self.train_set, self.val_set, self.test_set = train_set, val_set, test_set
        self.batch_size = batch_size
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        # Lightning puts a DistributedSampler (shuffling, seeded per epoch) under this when distributed.
        return DataLoader(
            self.train_set, self.batch_size, shuffle=True, num_workers=self.num_workers, collate_fn=self.collate_fn
        )

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.test_set)

    def _evaluation_loader(self, dataset: Dataset) -> DataLoader:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = ExactDistributedSampler(dataset, num_replicas=world, rank=rank)
        return DataLoader(
            dataset, self.batch_size, sampler=sampler, num_workers=self.num_workers, collate_fn=self.collate_fn
        )
