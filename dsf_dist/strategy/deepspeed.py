"""DeepSpeed ZeRO from `strategy.deepspeed`. GPU: Lightning's DeepSpeedStrategy. CPU: the same strategy
with the three CUDA assumptions removed (FACTS.md), on DeepSpeed's CPU accelerator over gloo.

Both resume a ZeRO checkpoint written on another number of ranks through a universal checkpoint, which rank zero
converts it into first (dsf_dist/checkpoints/universal.py)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.seed import reset_seed
from pytorch_lightning.strategies import DDPStrategy, DeepSpeedStrategy

from dsf_dist.checkpoints.universal import to_universal, universal_path, zero_world_size
from dsf_dist.config.strategy import DeepSpeedOptions, StrategyConfig


def build(cfg: StrategyConfig, on_gpu: bool) -> DeepSpeedStrategy:
    if not on_gpu:
        # Read by `import deepspeed`; spawned and re-run ranks inherit it.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    strategy_class = ResumableDeepSpeedStrategy if on_gpu else CPUDeepSpeedStrategy
    options = cfg.deepspeed
    strategy = strategy_class(**strategy_kwargs(options))
    strategy._timeout = timedelta(seconds=cfg.timeout_s)
    if options.offload_optimizer != "none":
        # The model's own optimizer (torch Adam from model.optimizer) steps on the offloaded state; DeepSpeed
        # refuses that unless told. For speed, name DeepSpeed's CPUAdam in strategy.deepspeed.config instead.
        strategy.config["zero_force_ds_cpu_optimizer"] = False
    if options.config:
        merge(strategy.config, load_deepspeed_config(options.config))
    return strategy


def strategy_kwargs(options: DeepSpeedOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "stage": options.stage,
        "offload_optimizer": options.offload_optimizer != "none",
        "offload_optimizer_device": options.offload_optimizer if options.offload_optimizer != "none" else "cpu",
        "offload_parameters": options.offload_parameters != "none",
        "offload_params_device": options.offload_parameters if options.offload_parameters != "none" else "cpu",
        "nvme_path": options.nvme_path,
        "allgather_bucket_size": options.allgather_bucket_size,
        "reduce_bucket_size": options.reduce_bucket_size,
    }
    return kwargs


def merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge `extra` into `base`: the pass-through file's keys win over the ones dsf derived."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def load_deepspeed_config(path: str) -> dict[str, Any]:
    import yaml  # JSON is YAML, so one loader reads both

    with open(path) as handle:
        return yaml.safe_load(handle) or {}


class ResumableDeepSpeedStrategy(DeepSpeedStrategy):
    def init_deepspeed(self) -> None:
        super().init_deepspeed()
        reset_trace_once_per_step(self.model)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """A ZeRO checkpoint of another world size: rank zero converts it to a universal checkpoint, which every
        rank then loads (DeepSpeed reads `checkpoint.load_universal` from its engine's config at load time)."""
        path = Path(checkpoint_path)
        saved = zero_world_size(path)
        if saved is None or saved == self.world_size:
            return super().load_checkpoint(checkpoint_path, weights_only)
        if self.is_global_zero:
            to_universal(path)
        self.barrier()
        config = self.deepspeed_engine._config
        config.load_universal_checkpoint = True
        try:
            return super().load_checkpoint(universal_path(path), weights_only)
        finally:
            config.load_universal_checkpoint = False


def reset_trace_once_per_step(engine: Any) -> None:
    """ZeRO-3 records the order its modules run in during one step, then prefetches parameters along it; a forward
    pre-hook on the root module (here the LightningModule) starts each step's record. Lightning enters that root
    twice per step: the engine calls it, its forward redirects to training_step, and training_step's `self(...)`
    calls it again. The second entry restarted the record, so the trace held one module, broke at the next, and
    every step ran without prefetching, fetching each module's parameters alone (benchmarks/RESULTS.md, causal LM
    throughput). The hook is replaced by one that starts the record on the outermost entry only (checked on a real
    2-rank ZeRO-3 run: tests/zero3_trace.py, tests/test_strategies.py)."""
    offload = getattr(engine.optimizer, "parameter_offload", engine.optimizer)  # the optimizer's, or the offload
    if getattr(offload, "fwd_pre_hook", None) is None:
        return  # not ZeRO-3
    depth = [0]

    def enter(module: torch.nn.Module, args: Any) -> None:
        if depth[0] == 0:
            coordinator = offload.get_param_coordinator()
            recording = coordinator.is_record_trace()
            coordinator.reset_step()
            if recording and coordinator.is_complete_trace():
                forget_release_decisions(coordinator)
        depth[0] += 1

    def leave(module: torch.nn.Module, args: Any, output: Any) -> None:
        depth[0] -= 1

    offload.fwd_pre_hook.remove()
    # First among the root's pre-hooks, as DeepSpeed's was: the record starts before the root's own fetch.
    offload.fwd_pre_hook = engine.module.register_forward_pre_hook(enter, prepend=True)
    engine.module.register_forward_hook(leave, always_call=True)


def forget_release_decisions(coordinator: Any) -> None:
    """ZeRO-3 decides which parameters a module releases after running from the recorded trace: those not used
    again soon (`__params_to_release` in deepspeed/runtime/zero/partitioned_param_coordinator.py). It caches each
    decision by (module, position in the trace) and never clears that cache, so decisions made under one trace
    outlive it. Lightning's sanity check runs a forward without a backward; the next step completes that as the
    trace, and its forward caches "release": under a forward-only trace nothing is used again. The step's backward
    invalidates that trace, the next ones record the whole forward and backward, but every later forward still
    released each parameter after use, and each backward fetched it again, one all-gather apiece (benchmarks/
    RESULTS.md, causal LM throughput). The cache is cleared whenever a newly recorded trace completes."""
    decide = type(coordinator)._PartitionedParameterCoordinator__params_to_release
    # The cache (functools.lru_cache) sits under DeepSpeed's NVTX wrapper, in its closure.
    for candidate in (decide, *(cell.cell_contents for cell in decide.__closure__ or ())):
        if hasattr(candidate, "cache_clear"):
            candidate.cache_clear()
            return


class CPUDeepSpeedStrategy(ResumableDeepSpeedStrategy):
    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)  # skip DeepSpeedStrategy's CUDA-only check

    def setup_distributed(self) -> None:
        # DeepSpeedStrategy's version first validates CUDA device indices; CPU devices have none.
        reset_seed()
        self.set_world_ranks()
        skip_shared_memory_op()
        self._init_deepspeed_distributed()

    @property
    def root_device(self) -> torch.device:
        # DeepSpeed's engine requires a device index (args.device_rank >= 0); a bare CPU device has None.
        return torch.device("cpu", self.local_rank)


def skip_shared_memory_op() -> None:
    """On CPU, DeepSpeed's communication backend compiles a C++ shared-memory op when it starts (about 45 s on 2
    cores the first time, and a compiler and Python headers on the machine; a build killed midway leaves torch's
    extension lock behind and every later start waits on it). Only `inference_all_reduce` uses that op, for
    DeepSpeed's inference and tensor-parallel layers, and it falls back to torch.distributed's all_reduce without
    it; ZeRO's collectives always go through torch.distributed (gloo here). Marked incompatible, the op is not built
    (deepspeed/comm/torch.py: build_shm_op)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
