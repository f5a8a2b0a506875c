"""One process, one rank: a real ZeRO-3 engine (DeepSpeed's CPU accelerator, gloo) runs a forward without a
backward, as Lightning's sanity check does, then training steps. Prints, as JSON, how many parameters the last
step's forward released after use, for DeepSpeed's own start-of-step hook ("stock") and for dsf's
(dsf_dist/strategy/deepspeed.py: reset_trace_once_per_step). Run by tests/test_zero3_release.py."""

from __future__ import annotations

import json
import os
import sys

import deepspeed
import torch
from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

from dsf_dist.strategy.deepspeed import reset_trace_once_per_step, skip_shared_memory_op

STEPS = 4  # the pass records a trace, step 0 completes it and breaks it, 1 records the whole, 2 on use it


def engine(dsf_hook: bool) -> deepspeed.DeepSpeedEngine:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16))
    zero = {"stage": 3, "stage3_param_persistence_threshold": 0}  # no parameter kept whole: each is released
    config = {"train_micro_batch_size_per_gpu": 4, "zero_optimization": zero, "zero_allow_untested_optimizer": True}
    built, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), config=config)
    if dsf_hook:
        reset_trace_once_per_step(built)
    return built


def forward_releases(built: deepspeed.DeepSpeedEngine) -> int:
    """Parameters released in the forward of the last of STEPS training steps, after one forward-only pass."""
    coordinator = built.optimizer.parameter_offload.get_param_coordinator()
    release, counted = coordinator.release_sub_module, []

    def counting(submodule: torch.nn.Module, forward: bool = False) -> None:
        release(submodule, forward=forward)
        if forward:
            params = submodule.parameters(recurse=False)
            counted.append(sum(p.ds_status == ZeroParamStatus.NOT_AVAILABLE for p in params))

    coordinator.release_sub_module = counting
    x = torch.randn(4, 16)
    with torch.no_grad():
        built.eval()
        built(x)
    built.train()
    for _ in range(STEPS):
        counted.clear()
        built.backward(built(x).square().mean())
        built.step()
    return sum(counted)


if __name__ == "__main__":
    skip_shared_memory_op()  # as dsf's CPU strategy does: nothing compiled (its all-reduce is not used here)
    deepspeed.init_distributed("gloo")
    variant = sys.argv[1]
    print(json.dumps({variant: forward_releases(engine(variant == "dsf")), "rank": os.environ["RANK"]}))
