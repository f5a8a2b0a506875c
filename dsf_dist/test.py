"""Run a model over the test split on every rank and gather its predictions; the seed's test.py."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from dsf_dist.config import DsfConfig
from dsf_dist.hooks.predictions import PredictionWriter
from dsf_dist.run_folder import RunFolder
from dsf_dist.train import build_trainer


def predict_test_set(
    cfg: DsfConfig, run: RunFolder, model: pl.LightningModule, data: pl.LightningDataModule, out: Path
) -> None:
    """All ranks run trainer.test on a model whose weights are already loaded (dsf_dist.checkpoints reads
    every strategy's format, so testing never depends on the strategy that trained); rank zero writes
    `out` (index, preds, target) in dataset order."""
    trainer = build_trainer(cfg, run, [PredictionWriter(out)], fit=False)
    trainer.test(model, datamodule=data, verbose=False)
