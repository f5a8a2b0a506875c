"""Run a model over the test split on every rank and gather its predictions; the seed's test.py."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from dsf_dist.config import DsfConfig
from dsf_dist.hooks.predictions import PredictionWriter
from dsf_dist.run_folder import RunFolder
from dsf_dist.train import build_trainer


def predict_test_set(
    cfg: DsfConfig,
    run: RunFolder,
    model: pl.LightningModule,
    data: pl.LightningDataModule,
    out: Path,
    ckpt_path: str | None = None,
) -> None:
    """All ranks run trainer.test; rank zero writes `out` (index, preds, target) in dataset order."""
    trainer = build_trainer(cfg, run, [PredictionWriter(out)], fit=False)
    # weights_only: a checkpoint can never run code while loading (DESIGN.md rule 6).
    trainer.test(model, datamodule=data, ckpt_path=ckpt_path, verbose=False, weights_only=True)
