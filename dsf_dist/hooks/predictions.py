"""Gather every test sample's prediction to rank zero, in dataset order, and save it.

All ranks take part in the gather (a collective, DESIGN.md rule 1); rank zero alone writes the file.
Indices come from each rank's sampler and duplicates are dropped, so the result is exact even under
a padding DistributedSampler (rule 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from dsf_dist.errors import DsfError
from dsf_dist.files import write_arrays
from dsf_dist.launchers.environment import gather_objects


class PredictionWriter(pl.Callback):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._preds: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._preds, self._targets = [], []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, dict) or "preds" not in outputs or "target" not in outputs:
            raise DsfError(
                f"{type(pl_module).__name__}.test_step must return {{'preds': ..., 'target': ...}} "
                "so dsf can score the test set"
            )
        self._preds.append(outputs["preds"].detach().float().cpu())
        self._targets.append(outputs["target"].detach().cpu())

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = trainer.test_dataloaders.sampler
        local = {
            "index": np.asarray(list(iter(sampler)), dtype=np.int64),
            "preds": torch.cat(self._preds).numpy(),
            "target": torch.cat(self._targets).numpy(),
        }
        if len(local["index"]) != len(local["preds"]):
            raise DsfError(
                f"rank {trainer.global_rank}: test sampler yielded {len(local['index'])} indices "
                f"but the model returned {len(local['preds'])} predictions; do not drop_last in test"
            )
        parts = gather_objects(local)
        if trainer.is_global_zero:
            write_arrays(self.path, **merge_by_index(parts))

    def state_dict(self) -> dict[str, Any]:
        return {}


def merge_by_index(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate ranks' predictions, keep the first of any repeated index, sort by index."""
    merged = {key: np.concatenate([part[key] for part in parts]) for key in ("index", "preds", "target")}
    unique_index, first = np.unique(merged["index"], return_index=True)
    return {"index": unique_index, "preds": merged["preds"][first], "target": merged["target"][first]}
