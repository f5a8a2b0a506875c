"""Evaluation sampling that scores every sample exactly once (DESIGN.md rule 2).

torch's DistributedSampler pads each rank to the same length by repeating samples, so a test metric
on N ranks counts some samples twice. Here rank r takes samples r, r+N, r+2N, ...: ranks may differ
by one sample, which evaluation tolerates (no gradient sync). Subclassing DistributedSampler keeps
Lightning from swapping in its padding one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler


class ExactDistributedSampler(DistributedSampler):
    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples
