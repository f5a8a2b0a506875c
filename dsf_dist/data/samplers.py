"""Samplers: evaluation that scores every sample exactly once (DESIGN.md rule 2), and a training order that
resumes exactly mid-epoch, at any world size (DESIGN.md rule 7). Both subclass DistributedSampler, which keeps
Lightning from swapping in its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from dsf_dist.errors import DsfError


class ExactDistributedSampler(DistributedSampler):
    """torch's DistributedSampler pads each rank to the same length by repeating samples, so a test metric on N
    ranks counts some samples twice. Here rank r takes samples r, r+N, r+2N, ...: ranks may differ by one sample,
    which evaluation tolerates (no gradient sync)."""

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


class ResumableSampler(DistributedSampler):
    """Training order whose position a checkpoint carries over exactly, at the same or another world size.

    Each epoch is one seeded permutation of the whole training set (seed + epoch, as torch's DistributedSampler);
    rank r of W takes every W-th sample of it. After S steps of batch B the ranks have together consumed exactly
    the first S*B*W samples of that permutation, so the position is one number, the same on every rank: the samples
    consumed (state_dict). A resumed pass, on any number of ranks, deals out the rest of the permutation the same
    way: no sample of the epoch is seen twice or skipped (except torch's padding, which repeats a few samples so
    that every rank gets as many; none when the remainder divides evenly).
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0  # samples of this epoch's permutation consumed before this pass (by any world size)
        self.yielded = 0  # indices this rank handed out in this pass

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0  # a restored position belongs to its own epoch only
        super().set_epoch(epoch)

    def order(self) -> list[int]:
        """The epoch's permutation of the whole training set."""
        if not self.shuffle:
            return list(range(len(self.dataset)))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.dataset), generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        self.yielded = 0
        order = self.order()
        remaining = order[self.start :]
        # torch's padding, taken from the start of the epoch's permutation: a pass resumed on as many ranks deals
        # out exactly what the uninterrupted pass would have.
        remaining += itertools.islice(itertools.cycle(order), -len(remaining) % self.num_replicas)
        for index in remaining[self.rank :: self.num_replicas]:
            self.yielded += 1
            yield index

    # __len__ stays the whole epoch's share (DistributedSampler's num_samples), also in a resumed pass: Lightning
    # counts an epoch's batches from the start of the epoch.

    def consumed(self) -> int:
        """Samples of this epoch's permutation consumed by all ranks together (padding included)."""
        return self.start + self.yielded * self.num_replicas

    def remaining_per_rank(self) -> int:
        """Indices this rank still hands out in the current epoch."""
        left = max(len(self.dataset) - self.consumed(), 0)
        return -(-left // self.num_replicas)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "consumed": self.consumed(),
            "dataset_size": len(self.dataset),
            "world_size": self.num_replicas,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["dataset_size"] != len(self.dataset):
            raise DsfError(
                f"the checkpoint's training set had {state['dataset_size']} samples and this one has "
                f"{len(self.dataset)}; resume with the data and data.split the run was started with"
            )
        self.epoch, self.seed = state["epoch"], state["seed"]
        self.start, self.yielded = state["consumed"], 0
