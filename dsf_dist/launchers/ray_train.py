"""What Ray Train contributes inside a worker (dsf_dist/launchers/ray_worker.py runs the pipeline there):

- Lightning's ranks, from Ray's worker context (RayLightningEnvironment);
- after every training epoch a checkpoint saved into the run folder and reported to Ray Train, the same number
  of times on every rank (RayReport); after a worker failure Ray restarts the worker group and `fit` continues
  from the last reported checkpoint, RNG state included, so the run ends as an uninterrupted one would;
- trainer.devices and trainer.num_nodes, from where Ray placed the workers (as torchrun's launcher does).

Only this module, the worker and the driver import Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint

from dsf_dist.errors import ConfigError

CHECKPOINT_FILE = "checkpoint.ckpt"
"""The Lightning checkpoint inside each checkpoint folder reported to Ray (ray-epochNNN-stepNNNNNN/)."""


def cluster_environment() -> list[Any]:
    """Lightning's view of ranks and world size, read from Ray Train's worker context."""
    from ray.train.lightning import RayLightningEnvironment

    return [RayLightningEnvironment()]


def callbacks(run_root: Path) -> list[Any]:
    return [RayReport(run_root)]


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
        wait_for_background_write(trainer.strategy)  # Ray is told of the checkpoint only once it is whole
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


def wait_for_background_write(strategy: Any) -> None:
    """With checkpoint.async_save the save above only started the write (dsf_dist/strategy/async_save.py leaves
    its Future on the strategy or its CheckpointIO): wait for it."""
    for holder in (strategy, getattr(strategy, "checkpoint_io", None)):
        write = getattr(holder, "pending_write", None)
        if write is not None:
            holder.pending_write = None
            write.result()


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
