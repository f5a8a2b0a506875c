"""Refuse, in one line and before torch is imported, a launch whose ranks differ from the config's.

A rank count that differs from trainer.devices x trainer.num_nodes makes Lightning raise with a traceback
(torchrun) or wait forever for ranks that never come (srun, or a SLURM batch shell without srun).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dsf_dist.errors import ConfigError
from dsf_dist.launch.slurm import check_srun


def check_launch(trainer: Mapping[str, Any], strategy: str, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" in env:  # torchrun, inside a SLURM job or not: torchrun's variables decide
        check_torchrun(trainer, strategy, env)
    else:
        check_srun(trainer, strategy, env)


def check_torchrun(trainer: Mapping[str, Any], strategy: str, env: Mapping[str, str]) -> None:
    if strategy == "ddp_spawn":
        raise ConfigError(
            "strategy.name: ddp_spawn spawns its own workers, but torchrun already started one process per device; "
            "use ddp (or fsdp, deepspeed) under torchrun"
        )
    per_node, world = int(env.get("LOCAL_WORLD_SIZE", "1")), int(env.get("WORLD_SIZE", "1"))
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes", 1)
    if devices != per_node or devices * nodes != world:
        raise ConfigError(
            f"trainer.devices={devices!r} x trainer.num_nodes={nodes} does not match torchrun's {world} process(es) "
            f"({per_node} per node); pass --set trainer.devices={per_node} --set trainer.num_nodes={world // per_node} "
            "(launchers/torchrun.sh does)"
        )
