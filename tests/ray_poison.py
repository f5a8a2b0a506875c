"""For tests/test_poison.py: the built-in MLP, plus a forward pre-hook that, once, mid-training, poisons the checkpoint
Ray last reported and fails the worker group, so that Ray restarts the workers from that poisoned checkpoint.
Named in a config as `model.network: tests.ray_poison:mlp_poisoning_its_checkpoint`; the job's working directory
(the repository) is on the workers' import path.

At training step `at_step` of the first attempt (the group did not start from a checkpoint), rank 0 waits until
Ray's controller has committed the checkpoints it reported, checks that the newest one passes dsf's vetting whole,
prints so, and plants a payload (a pickle that runs `touch <marker>`) in its checkpoint.ckpt, as someone with write
access to the storage could; after a barrier every rank raises, and Ray restarts the group from that checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dsf_dist.models.networks import mlp


class InjectedFault(RuntimeError):
    """Raised by every rank once the reported checkpoint is poisoned."""


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def mlp_poisoning_its_checkpoint(
    input_size: int,
    output_size: int,
    marker: str,
    at_step: int,
    hidden_sizes: Sequence[int] = (128, 64),
    dropout: float = 0.1,
) -> nn.Module:
    network = mlp(input_size, output_size, hidden_sizes, dropout)
    if not started_fresh():
        return network
    steps = 0

    def poison(module: nn.Module, args: tuple) -> None:
        nonlocal steps
        if not module.training:  # validation, sanity check, test
            return
        steps += 1
        if steps != at_step:
            return
        if int(os.environ["RANK"]) == 0:  # only rank zero's reports carry the checkpoint
            plant(committed_checkpoint() / "checkpoint.ckpt", marker)
        torch.distributed.barrier()  # every rank at the same step: none raises before the file is poisoned
        raise InjectedFault(f"the checkpoint Ray reported last was poisoned at training step {steps}")

    network.register_forward_pre_hook(poison)
    return network


def plant(checkpoint: Path, marker: str) -> None:
    from dsf_dist.checkpoints import vet

    print(f"ray_poison: {checkpoint} passed the vetting whole as a {vet(checkpoint)} checkpoint", flush=True)
    contents = torch.load(checkpoint, map_location="cpu", weights_only=True)
    contents["dsf_test_payload"] = Payload(marker)
    staging = checkpoint.with_name(f".{checkpoint.name}.poison")
    torch.save(contents, staging)
    os.replace(staging, checkpoint)
    print(f"ray_poison: planted a payload in {checkpoint}", flush=True)


def started_fresh() -> bool:
    """The first attempt of a Ray Train worker group (no reported checkpoint to start from); False outside Ray."""
    from dsf_dist.launchers.environment import resolve

    if resolve().launcher != "ray":
        return False
    import ray.train

    return ray.train.get_checkpoint() is None


def committed_checkpoint() -> Path:
    """Blocks until Ray Train's controller has committed every checkpoint reported so far; the newest one's folder."""
    import ray.train

    committed = ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
    return Path(committed[-1].checkpoint.path)
