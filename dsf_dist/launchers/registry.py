"""Which launcher started this process, and what it contributes: a refusal before a launch that cannot work,
Lightning's cluster environment, and callbacks. The trainer asks here; it never branches on the launcher.

Outside torchrun and Ray Train (one process, Lightning's own `ddp` children, srun tasks) Lightning's view of the
ranks is SLURM's when it runs inside a SLURM job and its own otherwise: both are the slurm module's answer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from dsf_dist.launchers.environment import Environment, resolve


def check_launch(trainer: Mapping[str, Any], strategy: str, env: Mapping[str, str] | None = None) -> None:
    """Before torch is imported: the processes the launcher started must be the ranks the config asks for."""
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" in env:  # torchrun, inside a SLURM job or not: torchrun's variables decide
        from dsf_dist.launchers.torchrun import check_torchrun

        check_torchrun(trainer, strategy, env)
    else:
        from dsf_dist.launchers.slurm import check_srun

        check_srun(trainer, strategy, env)


def cluster_environment(env: Environment | None = None) -> list[Any]:
    """The plugins that tell Lightning this process's rank and world: the launcher's own environment."""
    return _launcher(env).cluster_environment()


def callbacks(run_root: Path, env: Environment | None = None) -> list[Any]:
    """Callbacks the launcher adds to a fit (Ray Train: report each epoch's checkpoint)."""
    return _launcher(env).callbacks(run_root)


def _launcher(env: Environment | None) -> ModuleType:
    launcher = (env or resolve()).launcher
    if launcher == "torchrun":
        from dsf_dist.launchers import torchrun

        return torchrun
    if launcher == "ray":
        from dsf_dist.launchers import ray_train

        return ray_train
    from dsf_dist.launchers import slurm

    return slurm
