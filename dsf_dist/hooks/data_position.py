"""The training loaders' position in every checkpoint, for every rank (DESIGN.md rule 7: exact mid-epoch resume).

Lightning saves the `state_dict()` of training loaders that have one (torchdata's StatefulDataLoader does) and
restores it, but it writes its loop state from rank zero's process only, and every rank then loads rank zero's. A
loader whose state differs per rank (a sampler counting its own rank's samples, a dataset sharded by rank) would
resume every rank at rank zero's position. So at every save each rank's loader states are gathered into the
checkpoint, and at a resume on as many ranks each rank gets back its own.

On another number of ranks a per-rank state has no counterpart; dsf's built-in DataModule does not need one: its
ResumableSampler counts samples for all ranks together, so rank zero's state is everyone's, and the epoch's
batch count is brought to the new world size (`on_train_start`). A user's loader without a state_dict restarts
its epoch on resume: dsf says so once, in one line, instead of Lightning's warning.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from dsf_dist.data.samplers import ResumableSampler
from dsf_dist.launchers.environment import gather_objects

KEY = "dsf_loader_positions"
LIGHTNING_NOT_RESUMABLE = "You're resuming from a checkpoint that ended before the epoch ended"


class LoaderPositions(Callback):
    def __init__(self) -> None:
        self.saved_world_size: int | None = None  # of the checkpoint this fit resumed from

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        warnings.filterwarnings("ignore", message=LIGHTNING_NOT_RESUMABLE)  # said in dsf's words on_train_start

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Every rank builds the checkpoint dict (only the writing is rank zero's), so this gather is a collective
        # that all ranks reach together (DESIGN.md rule 1).
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        states = gather_objects(fit_loop.get("combined_loader", []))
        checkpoint[KEY] = {"world_size": trainer.world_size, "per_rank": states}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        saved = checkpoint.get(KEY)
        fit_loop = checkpoint.get("loops", {}).get("fit_loop")
        if saved is None or fit_loop is None:
            return
        self.saved_world_size = saved["world_size"]
        if saved["world_size"] == trainer.world_size:
            fit_loop["combined_loader"] = saved["per_rank"][trainer.global_rank]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is None:
            return
        loaders = trainer.fit_loop._combined_loader.flattened if trainer.fit_loop._combined_loader else []
        samplers = [getattr(loader, "sampler", None) for loader in loaders]
        new_world = self.saved_world_size not in (None, trainer.world_size)
        if samplers and all(isinstance(sampler, ResumableSampler) for sampler in samplers):
            sampler = samplers[0]
            mid_epoch = sampler.epoch == trainer.current_epoch and sampler.start < len(sampler.dataset)
            if new_world and mid_epoch:
                self._continue_epoch_on_new_world_size(trainer, sampler)
            return
        stateful = bool(loaders) and all(hasattr(loader, "state_dict") for loader in loaders)
        if (new_world or not stateful) and stopped_mid_epoch(trainer) and trainer.is_global_zero:
            print(f"dsf: {self._inexact_reason(trainer, loaders, stateful)}", file=sys.stderr)

    def _continue_epoch_on_new_world_size(self, trainer: pl.Trainer, sampler: ResumableSampler) -> None:
        """The epoch's batches already done, counted in batches of this world size, so that Lightning ends the
        epoch when the sampler runs out (it counts an epoch's batches from its start)."""
        loader = trainer.fit_loop._combined_loader.flattened[0]
        left = sampler.remaining_per_rank()
        batches_left = left // loader.batch_size if loader.drop_last else -(-left // loader.batch_size)
        done = max(int(trainer.num_training_batches) - batches_left, 0)
        # Shifted, not set: Lightning still adjusts the counters of a checkpoint saved mid-step when its epoch loop
        # restarts (completed lags the others by one), and that must keep working on the shifted values.
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        shift = done - progress.ready
        progress.ready, progress.started = progress.ready + shift, progress.started + shift
        progress.processed, progress.completed = progress.processed + shift, progress.completed + shift
        if trainer.is_global_zero:
            print(
                f"dsf: resumed a checkpoint of {self.saved_world_size} rank(s) on {trainer.world_size}: the data "
                f"position carries over by sample count ({sampler.consumed()} of the epoch's {len(sampler.dataset)} "
                "samples done); the steps from here on are not bit-identical to a run on the old world size "
                "(README: Failure handling)",
                file=sys.stderr,
            )

    def _inexact_reason(self, trainer: pl.Trainer, loaders: list[Any], stateful: bool) -> str:
        names = ", ".join(sorted({type(loader).__name__ for loader in loaders})) or "none"
        if stateful:
            return (
                f"resumed a checkpoint of {self.saved_world_size} rank(s) on {trainer.world_size}: the training "
                f"loaders ({names}) saved a position per rank, so each rank continues from rank 0's; for an exact "
                "resume at another world size use dsf's DataModule, or a sampler that counts samples for all ranks"
            )
        return (
            f"resumed mid-epoch with training loaders ({names}) that have no state_dict, so the rest of this epoch "
            "is reshuffled; for an exact resume return a torchdata StatefulDataLoader (with a sampler that has "
            "state_dict/load_state_dict) from train_dataloader"
        )


def stopped_mid_epoch(trainer: pl.Trainer) -> bool:
    """Lightning's own test for the checkpoint of a fit that resumes: it was saved before its epoch ended."""
    if trainer.num_training_batches == float("inf"):
        return False
    steps_per_epoch = -(-int(trainer.num_training_batches) // trainer.accumulate_grad_batches)
    return trainer.global_step % steps_per_epoch != 0
