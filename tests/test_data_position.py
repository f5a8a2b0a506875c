"""The pieces of an exact resume, in one process: the training sampler's position carried over at the same and at
another world size (every sample of the epoch exactly once), torchdata's StatefulDataLoader resumed with loader
workers, and the checkpoint bookkeeping that follows a moved run folder."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from dsf_dist.data.samplers import ResumableSampler
from dsf_dist.errors import DsfError
from dsf_dist.hooks.checkpoint import AtomicModelCheckpoint

DATA = TensorDataset(torch.arange(103))  # odd: the padding that evens out ranks shows


def loader(world: int, rank: int, workers: int = 0, batch: int = 8) -> StatefulDataLoader:
    sampler = ResumableSampler(DATA, num_replicas=world, rank=rank, seed=3)
    sampler.set_epoch(1)
    return StatefulDataLoader(DATA, batch, sampler=sampler, num_workers=workers)


def batches(loaders: list[StatefulDataLoader], count: int | None = None) -> list[list[list[int]]]:
    """Each rank's next `count` batches (all when None), the ranks stepping together as training does."""
    iterators = [iter(each) for each in loaders]
    taken: list[list[list[int]]] = [[] for _ in loaders]
    for _ in range(count) if count is not None else itertools.count():
        try:
            step = [next(iterator)[0].tolist() for iterator in iterators]
        except StopIteration:
            break
        for rank, batch in enumerate(step):
            taken[rank].append(batch)
    return taken


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_pass_on_as_many_ranks_deals_out_the_same_batches(workers):
    uninterrupted = batches([loader(2, rank, workers) for rank in range(2)])
    first = [loader(2, rank, workers) for rank in range(2)]
    before = batches(first, 3)
    states = [each.state_dict() for each in first]
    again = [loader(2, rank, workers) for rank in range(2)]
    for each, state in zip(again, states, strict=True):
        each.load_state_dict(state)
    after = batches(again)
    assert [b + a for b, a in zip(before, after, strict=True)] == uninterrupted


@pytest.mark.parametrize(("before_world", "after_world"), [(2, 1), (1, 2), (2, 3), (3, 2)])
def test_another_world_size_continues_by_sample_count(before_world, after_world):
    first = [loader(before_world, rank) for rank in range(before_world)]
    seen = [i for rank in batches(first, 4) for batch in rank for i in batch]
    state = first[0].state_dict()  # the position is global: rank zero's is everyone's
    assert state["_sampler_iter_state"]["sampler_state"]["consumed"] == 4 * 8 * before_world
    resumed = [loader(after_world, rank) for rank in range(after_world)]
    for each in resumed:
        each.load_state_dict(state)
    rest = [i for rank in batches(resumed) for batch in rank for i in batch]
    counts = Counter(seen + rest)
    assert set(counts) == set(range(len(DATA)))  # nothing skipped
    repeated = sum(counts.values()) - len(DATA)
    assert repeated == -(len(DATA) - len(seen)) % after_world  # only torch's padding of the last batch repeats


def test_a_position_for_another_training_set_is_refused():
    sampler = ResumableSampler(DATA, num_replicas=1, rank=0, seed=3)
    with pytest.raises(DsfError, match="training set had 99 samples and this one has 103"):
        sampler.load_state_dict({"epoch": 0, "seed": 3, "consumed": 8, "dataset_size": 99, "world_size": 1})


def test_checkpoint_bookkeeping_follows_a_moved_run_folder(tmp_path):
    saving = AtomicModelCheckpoint(dirpath=tmp_path / "old" / "checkpoints", monitor="val_loss", save_top_k=2)
    old, new = Path(saving.dirpath), (tmp_path / "new" / "checkpoints").resolve()  # Lightning keeps the real path
    saving.best_model_path = str(old / "epoch002.ckpt")
    saving.last_model_path = str(old / "last.ckpt")
    saving.best_k_models = {str(old / "epoch002.ckpt"): torch.tensor(0.5), str(old / "epoch001.ckpt"): 0.7}
    saving.kth_best_model_path = str(old / "epoch001.ckpt")
    state = saving.state_dict()
    assert (state["dirpath"], state["last_model_path"]) == (".", "last.ckpt")
    assert set(state["best_k_models"]) == {"epoch002.ckpt", "epoch001.ckpt"}

    for saved in (state, ModelCheckpoint.state_dict(saving)):  # dsf's relative bookkeeping, and Lightning's absolute
        loading = AtomicModelCheckpoint(dirpath=new, monitor="val_loss", save_top_k=2)
        loading.load_state_dict(saved)
        assert Path(loading.last_model_path) == new / "last.ckpt"
        assert Path(loading.best_model_path) == new / "epoch002.ckpt"
        assert Path(loading.kth_best_model_path) == new / "epoch001.ckpt"
        assert {Path(p) for p in loading.best_k_models} == {new / "epoch002.ckpt", new / "epoch001.ckpt"}
