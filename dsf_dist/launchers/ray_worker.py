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
from dsf_dist.errors import ConfigError, DsfError
from dsf_dist.launchers.ray_train import CHECKPOINT_FILE, placement
from dsf_dist.pipeline import Main
from dsf_dist.run_folder import RunFolder, resumable

EXIT_CONFIG = ConfigError.exit_code  # config and run-folder mistakes, found alike on every rank


@dataclass(frozen=True)
class RayRunFolder(RunFolder):
    """The run folder as a Ray worker sees it: the driver created it and wrote config.yaml; fit continues from
    Ray's last reported checkpoint (with checkpoint.every_n_train_steps: the newer of it and checkpoints/last.ckpt),
    else as `dsf run` would (checkpoints/last.ckpt with run.resume=auto, else from the start). Workers never create
    or rewrite the folder."""

    ray_checkpoint: str | None = None

    def prepare(self, cfg: DsfConfig, write: bool) -> str | None:
        # With checkpoint.every_n_train_steps the run's last.ckpt can be newer than Ray's last report (once per
        # epoch): a restart takes the newer of the two, so that it loses the least. (Such a last.ckpt without
        # run.resume=auto was written by this job: the driver refuses to start a fresh job in an existing folder.)
        if self.ray_checkpoint is None or not cfg.checkpoint.every_n_train_steps:
            return self.ray_checkpoint or super().prepare(cfg, write=False)
        found = [path for path in (self.ray_checkpoint, resumable(self.checkpoints / "last.ckpt")) if path]
        newest = max(found, key=lambda path: Path(path).stat().st_mtime)
        if newest != self.ray_checkpoint:  # Ray's own was vetted in worker_main
            check_resumable(Path(newest))
        return newest


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
    instead of raised so that Ray does not retry what would fail again. Any other error is raised: it may be this
    rank's alone (a full disk, a fault), and a worker that returned would leave the others waiting in their next
    collective; raised, Ray ends the worker group at once and names this rank and the error (and restarts it
    when ray.max_failures allows)."""
    entry.quiet_known_noise()
    if Path(loop_config["working_dir"]).is_dir():
        os.chdir(loop_config["working_dir"])  # Ray Train moved the worker into its own artifacts folder
    try:
        main = worker_main(Path(loop_config["config"]))
        report = main.execute()
    except DsfError as err:
        if err.exit_code != EXIT_CONFIG:
            raise
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
