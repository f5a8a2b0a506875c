"""Two gloo ranks clip an FSDP1 (FullyShardedDataParallel) model's gradients by norm the way dsf's GPU FSDP strategy
does (dsf_dist/strategy/fsdp.py: ClippingFSDPPrecision), and the way Lightning's plain precision plugin would
(torch.nn.utils.clip_grad_norm_ on each rank's local shards). Prints one JSON line: the global gradient norm
before and after each. Run by tests/test_causal_lm_runs.py; `python tests/fsdp1_clip.py` by hand."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def global_norm(module: torch.nn.Module) -> float:
    local = sum(float((p.grad.detach() ** 2).sum()) for p in module.parameters() if p.grad is not None)
    total = torch.tensor([local], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.sqrt())


def worker(rank: int, port: int, clip: float, out: str) -> None:
    from pytorch_lightning.plugins.precision import FSDPPrecision
    from torch.distributed.fsdp import FullyShardedDataParallel

    from dsf_dist.config.strategy import FSDPOptions
    from dsf_dist.strategy.fsdp import lightning_fsdp

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    figures = {}
    for how in ("dsf", "local shards"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        sharded = FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)
        torch.manual_seed(rank)
        sharded(torch.randn(8, 16)).pow(2).sum().mul(10).backward()
        before = global_norm(sharded)
        if how == "dsf":
            strategy = lightning_fsdp(FSDPOptions(), timedelta(seconds=60))
            strategy.precision_plugin = FSDPPrecision("32-true")  # as Lightning's trainer sets it
            strategy.precision_plugin.root = sharded  # as the strategy's setup does, once it wrapped the model
            strategy.precision_plugin.clip_grad_by_norm(None, clip)
            figures["plugin"] = type(strategy.precision_plugin).__name__
        else:
            torch.nn.utils.clip_grad_norm_([p for p in sharded.parameters() if p.grad is not None], clip)
        figures[how] = {"before": before, "after": global_norm(sharded)}
    if rank == 0:
        with open(out, "w") as handle:
            json.dump(figures, handle)
    # Both ranks leave together: a gloo rank still tearing down its pairs when the other closes its side can abort
    # ("terminate called without an active exception"; seen once in CI).
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = sys.argv[1] if len(sys.argv) > 1 else "/dev/stdout"
    mp.spawn(worker, args=(port, 0.5, out), nprocs=2, join=True)
