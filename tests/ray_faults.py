"""Fault injection for tests/test_ray.py: the built-in MLP, plus a forward pre-hook that kills one Ray Train worker
once, mid-training. Named in a config as `model.network: tests.ray_faults:mlp_killing_a_rank`; the job's working
directory (the repository) is on the workers' import path.

Every rank decides alone and alike, from what all ranks share, so that no rank waits in a collective for a dead
one: at training step `kill_at_step` of the first attempt (the worker group did not start from a checkpoint), rank
`kill_rank` kills itself with SIGKILL and every other rank raises. With `others_raise: false` the others carry on
into the next collective instead, as they would after a real crash, and wait there until Ray tears the group down.

Whether it is the first attempt is read when the network is built, at the start of a worker: later,
`ray.train.get_checkpoint()` differs between ranks (it follows each rank's own reports, and only rank zero's carry
the checkpoint). The hook adds nothing to the state dict and draws no random numbers, so weights and results equal
those of the plain `mlp` with the same seed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

from torch import nn

from dsf_dist.models.networks import mlp


class InjectedFault(RuntimeError):
    """Raised by the ranks that were not killed, at the same step."""


def mlp_killing_a_rank(
    input_size: int,
    output_size: int,
    hidden_sizes: Sequence[int] = (128, 64),
    dropout: float = 0.1,
    kill_rank: int = 1,
    kill_at_step: int | None = None,
    others_raise: bool = True,
) -> nn.Module:
    network = mlp(input_size, output_size, hidden_sizes, dropout)
    if kill_at_step is None:
        return network
    attempt = attempt_kind()
    if attempt == "restarted":
        network.register_forward_pre_hook(say_when_training_resumes())
    if attempt != "fresh":
        return network
    steps = 0

    def count(module: nn.Module, args: tuple) -> None:
        nonlocal steps
        if not module.training:  # validation, sanity check, test
            return
        steps += 1
        if steps != kill_at_step:
            return
        # A report reaches Ray's controller at its next poll; one lost to a failure right after it would make the
        # restart begin from the start. Wait until Ray holds the checkpoints reported so far.
        committed = reported_checkpoints()
        rank = int(os.environ["RANK"])
        if rank == kill_rank:
            print(
                f"ray_faults: killing rank {rank} (pid {os.getpid()}) at training step {steps}, {committed}, "
                f"at unix time {time.time():.3f}",
                flush=True,
            )
            os.kill(os.getpid(), signal.SIGKILL)
        if others_raise:
            raise InjectedFault(f"rank {kill_rank} was killed at training step {steps}")

    network.register_forward_pre_hook(count)
    return network


def attempt_kind() -> str | None:
    """ "fresh" when this worker group did not start from a reported checkpoint, "restarted" when it did (read when
    the workers start); None outside a Ray Train worker (e.g. `dsf test` on the run folder afterwards), where
    nothing is killed."""
    from dsf_dist.launchers.environment import resolve

    if resolve().launcher != "ray":
        return None
    import ray.train

    return "fresh" if ray.train.get_checkpoint() is None else "restarted"


def say_when_training_resumes():
    """A hook that prints, at the restarted group's first training step, the time (the test measures the restart
    from the kill to this line; the workers and the test share one clock, on one machine)."""
    said = False

    def hook(module: nn.Module, args: tuple) -> None:
        nonlocal said
        if module.training and not said:
            said = True
            print(f"ray_faults: rank {os.environ['RANK']} resumed training at unix time {time.time():.3f}", flush=True)

    return hook


def reported_checkpoints() -> str:
    """Blocks until Ray Train's controller has committed every checkpoint this rank reported; names the newest."""
    import ray.train

    committed = ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
    newest = committed[-1].checkpoint.path if committed else None
    return f"after {len(committed)} committed checkpoint(s), the newest {newest}"
