"""The one environment resolver (DESIGN.md rule 3): who am I, among how many, launched by whom.

It reads the variables each launcher sets and nothing else reads them. It works before any process
group exists, so the CLI can decide which rank creates the run folder before the trainer starts.
Beside it, the rank helpers that work at world size 1 (no process group) as well as at N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from dsf_dist.errors import ConfigError

Launcher = Literal["single", "torchrun", "slurm", "lightning", "ray"]


@dataclass(frozen=True)
class Environment:
    launcher: Launcher
    rank: int
    world_size: int
    local_rank: int
    node_rank: int
    job_id: str | None
    """An id shared by every rank of this job (SLURM job id, torchrun run id), when the launcher has one."""

    @property
    def is_rank_zero(self) -> bool:
        return self.rank == 0

    @property
    def external(self) -> bool:
        """Processes were started by a launcher outside Lightning (torchrun, srun, Ray Train)."""
        return self.launcher in ("torchrun", "slurm", "ray")


def _int(env: dict[str, str], key: str, default: int = 0) -> int:
    return int(env.get(key, default))


def resolve(env: dict[str, str] | None = None) -> Environment:
    env = dict(os.environ if env is None else env)
    # A Ray Train worker: Ray's torch backend exports torchrun's variables (RANK, LOCAL_WORLD_SIZE, ...) into a
    # process of a Ray job (RAY_JOB_ID), so this comes before torchrun's and SLURM's (Ray can run inside SLURM).
    if "RAY_JOB_ID" in env and "RANK" in env and "TORCHELASTIC_RUN_ID" not in env:
        return Environment(
            "ray",
            rank=_int(env, "RANK"),
            world_size=_int(env, "WORLD_SIZE", 1),
            local_rank=_int(env, "LOCAL_RANK"),
            node_rank=_int(env, "NODE_RANK"),
            job_id=env["RAY_JOB_ID"],
        )
    if "TORCHELASTIC_RUN_ID" in env or ("RANK" in env and "LOCAL_WORLD_SIZE" in env):
        run_id = env.get("TORCHELASTIC_RUN_ID")
        return Environment(
            "torchrun",
            rank=_int(env, "RANK"),
            world_size=_int(env, "WORLD_SIZE", 1),
            local_rank=_int(env, "LOCAL_RANK"),
            node_rank=_int(env, "GROUP_RANK"),
            job_id=run_id if run_id and run_id != "none" else None,
        )
    # A task started by srun; a bare sbatch shell has SLURM_JOB_ID but is not a rank of anything.
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        return Environment(
            "slurm",
            rank=_int(env, "SLURM_PROCID"),
            world_size=_int(env, "SLURM_NTASKS", 1),
            local_rank=_int(env, "SLURM_LOCALID"),
            node_rank=_int(env, "SLURM_NODEID"),
            job_id=env.get("SLURM_JOB_ID"),
        )
    # Children that Lightning's own `ddp` launcher started on this node (it sets LOCAL_RANK and
    # WORLD_SIZE); across nodes dsf relies on torchrun or srun, which set the global rank.
    if "LOCAL_RANK" in env and "WORLD_SIZE" in env:
        local = _int(env, "LOCAL_RANK")
        return Environment("lightning", local, _int(env, "WORLD_SIZE", 1), local, _int(env, "NODE_RANK"), None)
    return Environment("single", 0, 1, 0, 0, None)


def process_group() -> bool:
    """A torch.distributed process group exists (ranks can talk); False at world size 1. Needs torch."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (a collective); [obj] without a process group."""
    if not process_group():
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def refuse_spawning(strategy: str, launcher: str, started: str, under: str) -> None:
    """ddp_spawn starts its own workers: under a launcher that already started one process per device it would
    start each rank's workers again."""
    if strategy == "ddp_spawn":
        raise ConfigError(
            f"strategy.name: ddp_spawn spawns its own workers, but {launcher} {started}; "
            f"use ddp (or fsdp, deepspeed) under {under}"
        )
