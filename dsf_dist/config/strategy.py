"""The strategy section: which parallel strategy, its per-family options, and the deadlines that bound a hung rank."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dsf_dist.config.base import Section


class DDPOptions(Section):
    """torch DistributedDataParallel options (also used by ddp_spawn)."""

    find_unused_parameters: bool = False
    static_graph: bool = False
    gradient_as_bucket_view: bool = False
    bucket_cap_mb: float = Field(25, gt=0)


class FSDPOptions(Section):
    """Fully sharded data parallel. GPU: Lightning's FSDPStrategy; CPU: FSDP2 (fully_shard) on gloo."""

    sharding: Literal["full", "grad_op", "hybrid", "none"] = "full"
    """full: params, grads, optimizer state sharded; grad_op: params kept whole between forward and backward;
    hybrid: shard within a node, replicate across nodes; none: replicate (DDP-like)."""
    wrap_modules: list[str] = Field(default_factory=list)
    """Class names of submodules sharded as their own unit (e.g. a transformer block); the root always is."""
    wrap_min_params: int | None = Field(None, ge=1)
    """Alternatively: shard as a unit every submodule with at least this many parameters."""
    activation_checkpointing: list[str] = Field(default_factory=list)
    """Class names of submodules whose activations are recomputed in backward instead of stored."""
    cpu_offload: bool = False
    """Keep parameters (and gradients) on the CPU between uses (GPU only; on CPU they are there anyway)."""
    state_dict: Literal["sharded", "full"] = "sharded"
    """Checkpoint format: a folder of per-rank shards (fast, any world size via `dsf export`) or one full file."""
    mixed_precision: Literal["none", "bf16", "fp16"] = "none"
    """Parameter dtype in forward/backward; gradients are reduced and the optimizer steps in fp32."""

    @model_validator(mode="after")
    def _one_wrap_policy(self) -> FSDPOptions:
        if self.wrap_modules and self.wrap_min_params:
            raise ValueError("set wrap_modules or wrap_min_params, not both")
        return self


class DeepSpeedOptions(Section):
    """DeepSpeed ZeRO. GPU: Lightning's DeepSpeedStrategy; CPU: the same engine on DeepSpeed's CPU accelerator."""

    stage: Literal[1, 2, 3] = 2
    """1: optimizer state sharded; 2: + gradients; 3: + parameters."""
    offload_optimizer: Literal["none", "cpu", "nvme"] = "none"
    offload_parameters: Literal["none", "cpu", "nvme"] = "none"
    """Stage 3 only."""
    nvme_path: str = "/local_nvme"
    allgather_bucket_size: int = Field(200_000_000, ge=1)
    reduce_bucket_size: int = Field(200_000_000, ge=1)
    config: str | None = None
    """A DeepSpeed JSON/YAML config for everything else; its keys win over the ones above."""

    @model_validator(mode="after")
    def _consistent(self) -> DeepSpeedOptions:
        if self.offload_parameters != "none" and self.stage != 3:
            raise ValueError(f"offload_parameters needs stage 3 (stage is {self.stage}); set stage: 3")
        return self


class PhaseTimeouts(Section):
    """Seconds a phase may take on a rank before it is taken as hung (a rank lost or stuck in a collective): the
    rank then writes its stacks into <run>/logs/ and the job ends, naming it (dsf_dist/hooks/watchdog.py)."""

    init_s: float = Field(600, gt=0)
    """From building the trainer until every rank has started, joined the process group and set up its data."""
    train_step_s: float = Field(600, gt=0)
    """One training step, with its gradient all-reduce."""
    checkpoint_s: float = Field(1800, gt=0)
    """Writing one checkpoint, all ranks (sharded strategies write a shard each)."""
    test_s: float = Field(600, gt=0)
    """One test or validation batch, and the gather of the predictions after the last one."""


class StrategyConfig(Section):
    name: Literal["auto", "ddp", "ddp_spawn", "fsdp", "deepspeed"] = "auto"
    """auto: one process; ddp: one process per device (or per torchrun/SLURM task); ddp_spawn: spawned workers;
    fsdp / deepspeed: sharded data parallel, one process per device."""
    timeout_s: int = Field(600, ge=10)
    """Process-group timeout: a lost rank ends the job after this long instead of hanging (torch's is 1800 s)."""
    timeouts: PhaseTimeouts = Field(default_factory=PhaseTimeouts)
    ddp: DDPOptions = Field(default_factory=DDPOptions)
    fsdp: FSDPOptions = Field(default_factory=FSDPOptions)
    deepspeed: DeepSpeedOptions = Field(default_factory=DeepSpeedOptions)

    @model_validator(mode="after")
    def _options_match_name(self) -> StrategyConfig:
        # Options for a strategy that is not selected would be silently ignored: refuse the ones that matter.
        if self.name != "deepspeed" and self.deepspeed.offload_optimizer != "none":
            raise ValueError(
                f"deepspeed.offload_optimizer is set but strategy.name is '{self.name}'; "
                "set strategy.name=deepspeed or remove the offload"
            )
        if self.name != "deepspeed" and self.deepspeed.offload_parameters != "none":
            raise ValueError(
                f"deepspeed.offload_parameters is set but strategy.name is '{self.name}'; "
                "set strategy.name=deepspeed or remove the offload"
            )
        if self.name != "fsdp" and self.fsdp.cpu_offload:
            raise ValueError(f"fsdp.cpu_offload is set but strategy.name is '{self.name}'; set strategy.name=fsdp")
        return self
