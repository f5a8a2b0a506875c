"""Ray Train inside the workers: dsf's own pipeline in every worker, on the process group Ray set up.

The driver (dsf_dist/launchers/ray.py) writes the resolved config into the run folder and starts its
`train_worker`, which calls `run_worker` here, in each of Ray Train's workers with the path of that file.
Each worker then:

- takes trainer.devices and trainer.num_nodes from where Ray placed the workers (as torchrun's launcher does);
- runs Main.execute (fit -> test the best checkpoint -> eval the existing model -> compare) with the configured
  strategy; Lightning's ranks come from Ray's worker context (RayLightningEnvironment);
- after every training epoch saves a checkpoint into the run folder and reports it to Ray Train, the same number
  of times on every rank (RayReport); after a worker failure Ray restarts the worker group and `fit` continues
  from the last reported checkpoint, RNG state included, so the run ends as an uninterrupted one would.

Only this module and the driver import Ray.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint

from dsf_dist import io
from dsf_dist.config import DsfConfig, load_config
from dsf_dist.errors import ConfigError, DsfError
from dsf_dist.pipeline import Main
from dsf_dist.run_folder import RunFolder

CHECKPOINT_FILE = "checkpoint.ckpt"
"""The Lightning checkpoint inside each checkpoint folder reported to Ray (ray-epochNNN-stepNNNNNN/)."""


def cluster_environment() -> Any:
    """Lightning's view of ranks and world size, read from Ray Train's worker context."""
    from ray.train.lightning import RayLightningEnvironment

    return RayLightningEnvironment()


class RayReport(Checkpoint):
    """At the end of every training epoch, on every rank: save a checkpoint into the run folder (a collective;
    every rank writes its part of a sharded one), then report it to Ray Train. Every rank reports once per epoch;
    rank zero's report carries the checkpoint. Ray keeps the newest ray.num_to_keep and restarts from the last.

    It is a Lightning `Checkpoint` callback so that Lightning runs it after dsf's ModelCheckpoint, whose state
    (best and last paths) is then part of what is reported. The folder is already in Ray's storage (the run
    folder is Ray's run folder), so nothing is copied."""

    def __init__(self, run_root: Path) -> None:
        self.run_root = run_root

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import ray.train

        name = f"ray-epoch{trainer.current_epoch:03d}-step{trainer.global_step:06d}"
        folder = self.run_root / name
        trainer.save_checkpoint(folder / CHECKPOINT_FILE, weights_only=False)
        metrics: dict[str, Any] = {
            key: value.item() for key, value in trainer.callback_metrics.items() if value.numel() == 1
        }
        metrics.update(epoch=trainer.current_epoch, step=trainer.global_step)
        checkpoint = ray.train.Checkpoint(str(folder)) if trainer.is_global_zero else None
        ray.train.report(
            metrics,
            checkpoint=checkpoint,
            checkpoint_dir_name=name,
            checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD,
        )


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
    from dsf_dist.cli import _gate_exit_code, quiet_known_noise

    quiet_known_noise()
    if Path(loop_config["working_dir"]).is_dir():
        os.chdir(loop_config["working_dir"])  # Ray Train moved the worker into its own artifacts folder
    try:
        main = worker_main(Path(loop_config["config"]))
        report = main.execute()
    except DsfError as err:
        return {"exit_code": err.exit_code, "error": str(err)}
    code = 0 if report is None else _gate_exit_code(report)
    if main.env.is_rank_zero:
        io.write_json(main.run.done, {"exit_code": code})
    return {"exit_code": code}


def worker_main(config: Path) -> RayMain:
    import ray.train

    devices, nodes = placement()
    cfg = load_config(config, [f"trainer.devices={devices}", f"trainer.num_nodes={nodes}"])
    reported = ray.train.get_checkpoint()
    resume_from = str(Path(reported.path) / CHECKPOINT_FILE) if reported is not None else None
    return RayMain(cfg, config.parent, resume_from)


def placement() -> tuple[int, int]:
    """(trainer.devices, trainer.num_nodes) from where Ray placed the workers: workers on this node, and nodes.
    Lightning needs the same number of ranks on every node; all ranks learn the smallest and largest count with
    one all-reduce on Ray's process group, so all of them agree on the answer or on the refusal."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    context = ray.train.get_context()
    local, world = context.get_local_world_size(), context.get_world_size()
    counts = torch.tensor([local, -local], device=ray.train.torch.get_device())
    dist.all_reduce(counts, op=dist.ReduceOp.MAX)
    largest, smallest = int(counts[0]), -int(counts[1])
    if largest != smallest:
        raise ConfigError(
            f"ray.num_workers: Ray placed the {world} workers unevenly ({smallest} to {largest} per node), and "
            "Lightning needs as many on every node; size ray.resources_per_worker so that each node takes the same "
            "number of workers"
        )
    return local, world // local
