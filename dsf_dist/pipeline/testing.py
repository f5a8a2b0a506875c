"""Run a model over the test split on every rank and gather its predictions; the seed's test.py."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from dsf_dist.config import DsfConfig
from dsf_dist.hooks.predictions import PredictionWriter
from dsf_dist.launchers.environment import resolve
from dsf_dist.pipeline.trainer import build_trainer
from dsf_dist.run_folder import RunFolder


class TestOutputs(PredictionWriter):
    """A test_step that returns {'preds', 'target'} has its predictions gathered (exact, per sample); one that
    returns nothing is taken at its word: what it logs is the result."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        # None until a test epoch runs in this process; under ddp_spawn it runs in the workers' copies only.
        self.logged_only: bool | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_test_epoch_start(trainer, pl_module)
        self.logged_only = False

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if outputs is None and not self._preds:
            self.logged_only = True
            return
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.logged_only:  # every rank runs the same test_step, so all gather or none does
            super().on_test_epoch_end(trainer, pl_module)


def predict_test_set(
    cfg: DsfConfig, run: RunFolder, model: pl.LightningModule, data: pl.LightningDataModule, out: Path
) -> dict[str, float] | None:
    """All ranks run trainer.test on a model whose weights are already loaded (dsf_dist.checkpoints reads
    every strategy's format, so testing never depends on the strategy that trained); rank zero writes
    `out` (index, preds, target) in dataset order. Returns None then, or, when test_step returns nothing,
    the metrics it logged (as Lightning reduced them over the ranks)."""
    outputs = TestOutputs(out)
    if resolve().is_rank_zero:
        out.unlink(missing_ok=True)  # so that its absence afterwards says "nothing returned" (ddp_spawn)
    trainer = build_trainer(cfg, run, [outputs], fit=False)
    trainer.test(model, datamodule=data, verbose=False)
    logged_only = outputs.logged_only if outputs.logged_only is not None else not out.is_file()
    if not logged_only:
        return None
    return {name: float(value) for name, value in trainer.callback_metrics.items() if value.numel() == 1}
