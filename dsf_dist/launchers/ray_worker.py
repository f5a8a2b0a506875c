"""A Ray Train worker's body: dsf's own pipeline on one rank, on the process group Ray set up.

The driver (ray.py) writes the resolved config into the run folder and starts its `train_worker`, which calls
`run_worker` here in each of Ray Train's workers with the path of that file. Each worker takes its devices and
nodes from where Ray placed it, then runs Main.execute (fit -> test the best checkpoint -> eval the existing
model -> compare) with the configured strategy; Ray's contributions to the trainer (its cluster environment,
the per-epoch checkpoint report) come from ray_train.py through the launcher registry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsf_dist import entry
from dsf_dist.checkpoints import check_resumable
from dsf_dist.config import DsfConfig, load_config
from dsf_dist.errors import DsfError
from dsf_dist.launchers.ray_train import CHECKPOINT_FILE, placement
from dsf_dist.pipeline import Main
from dsf_dist.run_folder import RunFolder


@dataclass(frozen=True)
class RayRunFolder(RunFolder):
    """The run folder as a Ray worker sees it: the driver created it and wrote config.yaml; fit continues from
    Ray's last reported checkpoint when there is one, else as `dsf run` would (checkpoints/last.ckpt with
    run.resume=auto, else from the start). Workers never create or rewrite the folder."""

    ray_checkpoint: str | None = None

    def prepare(self, cfg: DsfConfig, write: bool) -> str | None:
        return self.ray_checkpoint or super().prepare(cfg, write=False)


class RayMain(Main):
    """The seed's Main in a Ray Train worker: the same pipeline, in the run folder the driver made."""

    def __init__(self, cfg: DsfConfig, run_dir: Path, ray_checkpoint: str | None) -> None:
        super().__init__(cfg, run_dir=run_dir)
        self.run = RayRunFolder(self.run.root, ray_checkpoint)


def run_worker(loop_config: dict[str, str]) -> dict[str, Any]:
    """The body of Ray Train's train_loop_per_worker (dsf_dist.launchers.ray.train_worker). `loop_config`:
    "config", the resolved config in the run folder; "working_dir", the driver's working folder (relative paths
    in the config start there, as under `dsf run`).

    Rank zero's return value reaches the driver: {"exit_code": 0, or 3 when a gate failed}, or for a mistake in
    the config (raised alike on every rank, before training) {"exit_code": 2, "error": "<one line>"}, returned
    instead of raised so that Ray does not retry what would fail again."""
    entry.quiet_known_noise()
    if Path(loop_config["working_dir"]).is_dir():
        os.chdir(loop_config["working_dir"])  # Ray Train moved the worker into its own artifacts folder
    try:
        main = worker_main(Path(loop_config["config"]))
        report = main.execute()
    except DsfError as err:
        return {"exit_code": err.exit_code, "error": str(err)}
    code = entry.record_finished(main.run, report) if main.env.is_rank_zero else entry.gate_exit_code(report)
    return {"exit_code": code}


def worker_main(config: Path) -> RayMain:
    import ray.train

    devices, nodes = placement()
    cfg = load_config(config, [f"trainer.devices={devices}", f"trainer.num_nodes={nodes}"])
    reported = ray.train.get_checkpoint()
    resume_from = str(Path(reported.path) / CHECKPOINT_FILE) if reported is not None else None
    if resume_from is not None:  # a restart: the reported checkpoint is vetted before Lightning or DeepSpeed reads it
        check_resumable(Path(resume_from))
    return RayMain(cfg, config.parent, resume_from)
