import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from dsf_dist.data.samplers import ExactDistributedSampler
from dsf_dist.hooks.predictions import merge_by_index


@pytest.mark.parametrize(("size", "world"), [(269, 2), (10, 3), (2, 4), (7, 1)])
def test_every_sample_once_across_ranks(size, world):
    per_rank = [list(ExactDistributedSampler(range(size), world, rank)) for rank in range(world)]
    assert sorted(i for indices in per_rank for i in indices) == list(range(size))
    assert [len(ExactDistributedSampler(range(size), world, rank)) for rank in range(world)] == list(map(len, per_rank))


def test_torch_sampler_pads_which_is_why_we_do_not_use_it():
    padded = [i for rank in range(2) for i in DistributedSampler(range(269), 2, rank, shuffle=False)]
    assert len(padded) == 270


def test_merge_drops_padding_duplicates_and_sorts():
    def part(indices):
        indices = np.array(indices)
        return {"index": indices, "preds": indices * 10.0, "target": indices % 2}

    merged = merge_by_index([part([0, 2, 4]), part([1, 3, 0])])  # rank 1 padded with sample 0
    assert merged["index"].tolist() == [0, 1, 2, 3, 4]
    assert merged["preds"].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]
