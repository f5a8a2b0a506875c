"""FSDP wrap units when strategy.fsdp names none: which submodules are sharded as their own unit, and, with
model.activation_checkpointing, which recompute their activations in backward.

Written into the run's config.yaml (strategy.fsdp.wrap_modules, activation_checkpointing), so the choice is
visible and repeatable.
"""

from __future__ import annotations

from torch import nn

from dsf_dist.config.schema import DsfConfig


def with_wrap_units(cfg: DsfConfig, units: list[str]) -> DsfConfig:
    fsdp = cfg.strategy.fsdp
    wrap = not (fsdp.wrap_modules or fsdp.wrap_min_params)
    checkpoint = cfg.model.activation_checkpointing and not fsdp.activation_checkpointing
    if cfg.strategy.name != "fsdp" or not units or not (wrap or checkpoint):
        return cfg
    resolved = cfg.model_copy(deep=True)
    if wrap:
        resolved.strategy.fsdp.wrap_modules = units
    if checkpoint:
        resolved.strategy.fsdp.activation_checkpointing = units
    return resolved


def transformer_blocks(model: nn.Module) -> list[str]:
    """The transformer's own answer to "which blocks must stay whole": its _no_split_modules (BertLayer, ...),
    kept to classes that occur in this model."""
    present = {type(module).__name__ for module in model.modules()}
    declared: set[str] = set()
    for module in model.modules():
        declared |= set(getattr(module, "_no_split_modules", None) or [])
    return sorted(declared & present)


def top_level_units(model: nn.Module) -> list[str]:
    """A user's LightningModule: its direct submodules that hold parameters. A stock module often calls
    self.net(x) in its steps rather than self(x); FSDP2 gathers a unit's shards in that unit's forward, so
    every parameter must sit in a unit whose forward the step calls, not in the root alone."""
    return sorted({type(child).__name__ for child in model.children() if any(True for _ in child.parameters())})
