"""The seed's generic DataModule: train / val / test datasets in, Lightning loaders out.

The training loader is torchdata's StatefulDataLoader over a ResumableSampler: its position (epoch, seed, samples
consumed) is part of every checkpoint, so a run stopped mid-epoch resumes with exactly the batches it had not yet
reached, on the same number of ranks or another (dsf_dist/hooks/data_position.py gathers the ranks' states).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from dsf_dist.data.samplers import ExactDistributedSampler, ResumableSampler

# torchdata 0.11 calls a torch function that torch 2.6+ deprecated, at every loader iterator: noise for a dsf user.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")


class DataModule(pl.LightningDataModule):
    def __init__(
        self,
        train_set: Dataset,
        val_set: Dataset,
        test_set: Dataset,
        batch_size: int,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        seed: int | None = None,
    ):
        """seed: of the training order; None takes the run's seed from pl.seed_everything (as Lightning's own
        DistributedSampler does)."""
        super().__init__()
        self.collate_fn = collate_fn  # None: torch's default; token batches pad to their longest sentence
        self.train_set, self.val_set, self.test_set = train_set, val_set, test_set
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed

    def train_dataloader(self) -> StatefulDataLoader:
        world, rank = self._ranks()
        sampler = ResumableSampler(self.train_set, num_replicas=world, rank=rank, seed=self.seed)
        return StatefulDataLoader(
            self.train_set,
            self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            # The loader's own generator (worker seeds): creating an iterator draws from it, and a draw from the
            # global generator would shift the dropout masks of a run resumed mid-epoch.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.test_set)

    def _ranks(self) -> tuple[int, int]:
        return (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)

    def _evaluation_loader(self, dataset: Dataset) -> DataLoader:
        world, rank = self._ranks()
        sampler = ExactDistributedSampler(dataset, num_replicas=world, rank=rank)
        return DataLoader(
            dataset, self.batch_size, sampler=sampler, num_workers=self.num_workers, collate_fn=self.collate_fn
        )
