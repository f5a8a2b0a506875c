"""torchrun (and `launchers/torchrun.sh`): refuse a launch whose ranks differ from the config's, in one line and
before torch is imported; hand Lightning torchrun's environment, even inside a SLURM job.

A rank count that differs from trainer.devices x trainer.num_nodes makes Lightning raise with a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dsf_dist.errors import ConfigError
from dsf_dist.launchers.environment import refuse_spawning


def check_torchrun(trainer: Mapping[str, Any], strategy: str, env: Mapping[str, str]) -> None:
    refuse_spawning(strategy, "torchrun", "already started one process per device", "torchrun")
    per_node, world = int(env.get("LOCAL_WORLD_SIZE", "1")), int(env.get("WORLD_SIZE", "1"))
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes", 1)
    if devices != per_node or devices * nodes != world:
        raise ConfigError(
            f"trainer.devices={devices!r} x trainer.num_nodes={nodes} does not match torchrun's {world} process(es) "
            f"({per_node} per node); pass --set trainer.devices={per_node} --set trainer.num_nodes={world // per_node} "
            "(launchers/torchrun.sh does)"
        )


def cluster_environment() -> list[Any]:
    """torchrun's environment: inside a SLURM allocation Lightning alone would pick SLURM's."""
    from lightning_fabric.plugins.environments import TorchElasticEnvironment

    return [TorchElasticEnvironment()]


def callbacks(run_root: Any) -> list[Any]:
    return []
