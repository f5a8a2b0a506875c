"""Per-rank memory of training state, measured from the tensors each rank really holds.

At the second optimizer step (gradients present; Adam allocates its state during the first) every rank
counts:
- parameters: the module's local storage (an FSDP2 DTensor's local shard, a ZeRO-3 partition, or the
  whole parameter);
- gradients: the module's local `.grad`, or DeepSpeed's gradient partitions;
- optimizer state: the torch optimizer's state tensors (Adam's exp_avg, exp_avg_sq);
- master weights: fp32 copies a ZeRO optimizer keeps beside the module's parameters (reported apart:
  DDP and FSDP keep none);
plus peak RSS. Tensors are de-duplicated by storage, so views are not counted twice. Each rank measures
locally; at the end of fit all ranks gather the figures (a collective, DESIGN.md rule 1: not inside the
step, where it would interleave with ZeRO-3's own prefetching collectives and hang) and rank zero writes
results/memory.json.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from dsf_dist.files import write_json
from dsf_dist.launchers.environment import gather_objects


def local(tensor: torch.Tensor) -> torch.Tensor:
    to_local = getattr(tensor, "to_local", None)  # DTensor (FSDP2)
    return to_local() if to_local else tensor


def nbytes(tensors: Iterable[torch.Tensor], seen: set[tuple[int, int]]) -> int:
    total = 0
    for tensor in tensors:
        if tensor is None or tensor.numel() == 0:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def innermost(optimizer: Any) -> torch.optim.Optimizer:
    while not (isinstance(optimizer, torch.optim.Optimizer) and type(optimizer).__module__.startswith("torch.optim")):
        inner = getattr(optimizer, "optimizer", None)
        if inner is None:
            break
        optimizer = inner
    return optimizer


def measure(module: torch.nn.Module, optimizer: Any) -> dict[str, int]:
    seen: set[tuple[int, int]] = set()
    params = [getattr(p, "ds_tensor", None) if hasattr(p, "ds_tensor") else local(p) for p in module.parameters()]
    counts = {"parameters": nbytes(params, seen)}
    grads = [local(p.grad) for p in module.parameters() if p.grad is not None]
    zero_grads = getattr(optimizer, "averaged_gradients", None) or {}
    grads += [g for group in zero_grads.values() for g in group if isinstance(g, torch.Tensor)]
    flat = getattr(optimizer, "grad_partitions_flat_buffer", None)  # ZeRO-3
    counts["gradients"] = nbytes([*grads, *([flat] if flat is not None else [])], seen)
    torch_optimizer = innermost(optimizer)
    state = [t for s in torch_optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    counts["optimizer_state"] = nbytes([local(t) for t in state], seen)
    masters = [p for group in torch_optimizer.param_groups for p in group["params"]]
    counts["master_weights"] = nbytes([local(p) for p in masters], seen)
    counts["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return counts


class MemoryReport(pl.Callback):
    def __init__(self, path: Path, at_step: int = 1) -> None:
        self.path = Path(path)
        self.at_step = at_step
        self.steps = 0
        self.mine: dict[str, Any] = {}

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        # After at_step real optimizer steps: DeepSpeed, which accumulates gradients itself, has this hook called
        # for every micro-batch, so the calls alone do not say when the optimizer has stepped.
        self.steps += 1
        if not self.mine and self.steps > self.at_step and trainer.global_step >= self.at_step:
            self.mine = {"rank": trainer.global_rank, **measure(pl_module, optimizer)}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        mine = self.mine or {"rank": trainer.global_rank, "error": f"fewer than {self.at_step + 1} optimizer steps"}
        ranks = gather_objects(mine)
        if trainer.is_global_zero:
            write_json(self.path, {"strategy": type(trainer.strategy).__name__, "ranks": ranks})
