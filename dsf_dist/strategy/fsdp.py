"""FSDP from `strategy.fsdp`. GPU: Lightning's FSDPStrategy. CPU: FSDP2 (`fully_shard`) through
Lightning's ModelParallelStrategy on gloo, because Lightning's FSDPStrategy refuses CPU.

Sharding is applied here, from config; the model code knows nothing of it. A LightningModule that
already shards itself in configure_model is left as it is. Gradient clipping by norm (trainer.gradient_clip_val)
works under both: FSDP2's gradients are DTensors, whose norm torch.nn.utils.clip_grad_norm_ reduces over all
shards; on FSDP1, whose precision plugin refuses clip-by-norm in Lightning, the root module's own clip_grad_norm_
does it.
"""

from __future__ import annotations

import functools
from concurrent.futures import wait
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.init import _materialize_distributed_module
from lightning_fabric.utilities.optimizer import _optimizers_to_device
from pytorch_lightning.plugins.precision import FSDPPrecision
from pytorch_lightning.strategies import FSDPStrategy, ModelParallelStrategy
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from dsf_dist.config.strategy import FSDPOptions, StrategyConfig

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def build(cfg: StrategyConfig, on_gpu: bool) -> FSDPStrategy | ModelParallelStrategy:
    timeout = timedelta(seconds=cfg.timeout_s)
    return lightning_fsdp(cfg.fsdp, timeout) if on_gpu else FSDP2Strategy(cfg.fsdp, timeout)


def selects(names: list[str], min_params: int | None = None):
    """A predicate on submodules: class name listed, or at least `min_params` parameters."""

    def chosen(module: nn.Module) -> bool:
        if type(module).__name__ in names:
            return True
        return min_params is not None and sum(p.numel() for p in module.parameters()) >= min_params

    return chosen


def lightning_fsdp(options: FSDPOptions, timeout: timedelta) -> FSDPStrategy:
    from torch.distributed.fsdp import MixedPrecision
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    sharding = {"full": "FULL_SHARD", "grad_op": "SHARD_GRAD_OP", "hybrid": "HYBRID_SHARD", "none": "NO_SHARD"}
    wrap = None
    if options.wrap_modules or options.wrap_min_params:
        wrap = functools.partial(
            lambda_auto_wrap_policy, lambda_fn=selects(options.wrap_modules, options.wrap_min_params)
        )
    checkpointing = None
    if options.activation_checkpointing:
        checkpointing = functools.partial(lambda_auto_wrap_policy, lambda_fn=selects(options.activation_checkpointing))
    precision = None
    if options.mixed_precision != "none":
        dtype = DTYPES[options.mixed_precision]
        precision = MixedPrecision(param_dtype=dtype, reduce_dtype=torch.float32, buffer_dtype=dtype)
    return ClippingFSDPStrategy(
        sharding_strategy=sharding[options.sharding],
        auto_wrap_policy=wrap,
        activation_checkpointing_policy=checkpointing,
        cpu_offload=options.cpu_offload,
        state_dict_type=options.state_dict,
        mixed_precision=precision,
        timeout=timeout,
    )


class ClippingFSDPPrecision(FSDPPrecision):
    """Lightning's FSDP1 precision plugin, clipping by norm with FSDP's own FullyShardedDataParallel.clip_grad_norm_
    on the root module: it reduces the norm over every rank's shard, where torch.nn.utils.clip_grad_norm_ on the
    local shards would clip each rank by its own shard's norm (why Lightning refuses it)."""

    root: nn.Module | None = None

    def clip_grad_by_norm(self, optimizer, clip_val: int | float) -> None:
        if self.root is None:
            raise RuntimeError("ClippingFSDPPrecision.root is unset: the strategy sets it once it wraps the model")
        self.root.clip_grad_norm_(clip_val)


class ClippingFSDPStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy (FSDP1, GPUs) with a precision plugin that clips by norm."""

    @FSDPStrategy.precision_plugin.setter
    def precision_plugin(self, plugin: FSDPPrecision | None) -> None:
        if isinstance(plugin, FSDPPrecision) and not isinstance(plugin, ClippingFSDPPrecision):
            plugin = ClippingFSDPPrecision(plugin.precision, plugin.scaler)  # what the trainer's precision made
        FSDPStrategy.precision_plugin.fset(self, plugin)

    def setup(self, trainer) -> None:
        if self._precision_plugin is None:
            self.precision_plugin = ClippingFSDPPrecision("32-true")
        super().setup(trainer)
        self.precision_plugin.root = self.model


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 over all ranks as one data-parallel group (no tensor parallelism)."""

    def __init__(self, options: FSDPOptions, timeout: timedelta) -> None:
        super().__init__(save_distributed_checkpoint=options.state_dict == "sharded", timeout=timeout)
        self.options = options
        self.async_save = False  # checkpoint.async_save (dsf_dist/strategy/async_save.py)
        self.pending_write = None  # the Future of the last save's background write, for the checkpoint hook
        self._writing = None  # the same Future, kept here: the stager's buffers are in use until it is done
        self._checkpoint_group = None
        self._stager = None

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def setup(self, trainer) -> None:
        # ModelParallelStrategy.setup without its demand that the LightningModule shard itself.
        self.accelerator.setup(trainer)
        shard(self.lightning_module, self.options, self._shard_mesh())
        _materialize_distributed_module(self.model, self.root_device)
        self.model = self.precision_plugin.convert_module(self.model)
        self.model_to_device()
        self.barrier()
        if trainer.state.fn == TrainerFn.FITTING:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()
        if trainer.state.fn == TrainerFn.FITTING:
            _optimizers_to_device(self.optimizers, self.root_device)
        if self.async_save and self._save_distributed_checkpoint and self._checkpoint_group is None:
            # Its own gloo group: the write's collectives run in a thread, beside training's (FACTS.md). Made here,
            # where every rank is anyway, and not in the first save, which the loop would wait for.
            self._checkpoint_group = torch.distributed.new_group(backend="gloo")

    def _shard_mesh(self):
        from torch.distributed.device_mesh import init_device_mesh

        if self.options.sharding in ("full", "grad_op"):
            return self.device_mesh["data_parallel"]
        # HSDP: replicate across the first mesh dimension, shard across the second.
        per_node = self.num_processes if self.options.sharding == "hybrid" else 1
        shape = (self.world_size // per_node, per_node)
        return init_device_mesh(self.root_device.type, shape, mesh_dim_names=("replicate", "shard"))

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None) -> None:
        """With async_save, ModelParallelStrategy's sharded save through torch.distributed.checkpoint.async_save: it
        returns once the shards are copied to host memory and writes them (and `.metadata`, last) in a thread."""
        if not (self.async_save and self._save_distributed_checkpoint):
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        from torch.distributed.checkpoint import async_save

        path = Path(self.broadcast(filepath))
        path.mkdir(parents=True, exist_ok=True)
        shards = {"state_dict": checkpoint.pop("state_dict")}
        shards.update({f"optimizer_{i}": state for i, state in enumerate(checkpoint.pop("optimizer_states", []))})
        if self._writing is not None:
            wait([self._writing])  # the checkpoint hook already waited; a direct trainer.save_checkpoint may not
        self._writing = async_save(
            shards, checkpoint_id=path, process_group=self._checkpoint_group, async_stager=self._host_stager()
        )
        self.pending_write = self._writing
        if self.global_rank == 0:
            torch.save(checkpoint, path / "meta.pt")  # the loops' and callbacks' state, as Lightning writes it

    def _host_stager(self):
        """One stager for the whole fit, where async_save would make (and drop) one per save: it keeps its host copy
        of each shard and copies the next save into it, instead of allocating the whole state afresh, which the loop
        waited for (the kernel maps every new page on first write). The copy stays allocated between saves (one
        host copy of this rank's shards), and is reused only once the write reading it is done (save_checkpoint)."""
        if self._stager is None:
            from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

            # FSDP2Strategy is the CPU path (build): no pinned or shared memory, no CUDA streams.
            self._stager = DefaultStager(StagingOptions(False, False, False, False))
        return self._stager

    def teardown(self) -> None:
        if self._stager is not None:
            if self._writing is not None:
                wait([self._writing])  # its outcome is the checkpoint hook's to report
            self._stager.close()
            self._stager = self._writing = None
        super().teardown()


def shard(module: nn.Module, options: FSDPOptions, mesh) -> None:
    """Activation checkpointing, then fully_shard on the chosen submodules (innermost first), then the root."""
    from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    if any(isinstance(m, FSDPModule) for m in module.modules()):
        return  # the LightningModule sharded itself in configure_model
    if options.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

        apply_activation_checkpointing(module, check_fn=selects(options.activation_checkpointing))
    precision = MixedPrecisionPolicy()
    if options.mixed_precision != "none":
        precision = MixedPrecisionPolicy(param_dtype=DTYPES[options.mixed_precision], reduce_dtype=torch.float32)
    kwargs = {
        "mesh": mesh,
        "reshard_after_forward": options.sharding != "grad_op",
        "mp_policy": precision,
        "offload_policy": CPUOffloadPolicy() if options.cpu_offload else OffloadPolicy(),
    }
    chosen = selects(options.wrap_modules, options.wrap_min_params)
    if options.wrap_modules or options.wrap_min_params:
        for sub in reversed(list(module.modules())):
            if sub is not module and chosen(sub):
                fully_shard(sub, **kwargs)
    fully_shard(module, **kwargs)
