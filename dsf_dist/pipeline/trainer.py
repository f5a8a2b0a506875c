"""Build the pl.Trainer from config and run fit; the seed's train.py. The launcher that started this process
contributes its cluster environment and callbacks (dsf_dist/launchers/registry.py); nothing here names one."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.model_helpers import is_overridden

from dsf_dist.config import DsfConfig
from dsf_dist.errors import ConfigError
from dsf_dist.hooks.checkpoint import checkpoint_callback, early_stopping_callback
from dsf_dist.hooks.data_position import LoaderPositions
from dsf_dist.hooks.loggers import RecordConfig, TrainingLog, build_loggers
from dsf_dist.hooks.memory import MemoryReport
from dsf_dist.hooks.preemption import Preemption
from dsf_dist.hooks.progress import NoProfiler, ProgressBar
from dsf_dist.hooks.rng import RNGState
from dsf_dist.hooks.throughput import ThroughputMonitor
from dsf_dist.hooks.watchdog import Watchdog
from dsf_dist.imports import load_object
from dsf_dist.launchers import registry
from dsf_dist.launchers.environment import resolve
from dsf_dist.run_folder import RunFolder
from dsf_dist.strategy import build_strategy
from dsf_dist.strategy.async_save import enable_async_save


def build_trainer(cfg: DsfConfig, run: RunFolder, callbacks: list[Callback], fit: bool) -> pl.Trainer:
    """One Trainer recipe for fit and for test; test trainers log nothing and save nothing."""
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks = [*callbacks, ProgressBar()]
    if fit:
        callbacks = [*callbacks, RecordConfig(cfg, run)]
    watchdog = Watchdog(cfg.strategy.timeouts, run.logs, spawn=cfg.strategy.name == "ddp_spawn")
    callbacks = [*callbacks, watchdog]  # last: its step deadline covers the other callbacks' work
    trainer = pl.Trainer(
        **{"profiler": NoProfiler(), **cfg.trainer},
        strategy=build_strategy(cfg.strategy, cfg.trainer),
        callbacks=callbacks,
        logger=build_loggers(cfg, run) if fit else False,
        enable_checkpointing=fit,
        default_root_dir=run.root,
        plugins=registry.cluster_environment(),
    )
    if fit and cfg.checkpoint.async_save:
        enable_async_save(trainer.strategy)
    return trainer


def fit(
    cfg: DsfConfig,
    run: RunFolder,
    model: pl.LightningModule,
    data: pl.LightningDataModule,
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Train (or continue from `resume_from`); return the best and last checkpoints, identical on every rank.
    (run_folder.training_record writes them into results/ relative to the run folder.)"""
    monitor = cfg.checkpoint.monitor if is_overridden("validation_step", model) else None
    if monitor is None and resolve().is_rank_zero:
        print(
            f"dsf: {type(model).__name__} has no validation_step, so checkpoint.monitor {cfg.checkpoint.monitor} is "
            "never logged: the best checkpoint is the last one",
            file=sys.stderr,
        )
    checkpoint = checkpoint_callback(cfg.checkpoint, run.checkpoints, monitor)
    preemption = Preemption(checkpoint, cfg.run.max_requeues, run.config, cfg.run.stop_check_s)
    callbacks = [checkpoint, preemption, RNGState(), LoaderPositions(), *early_stopping_callback(cfg.early_stopping)]
    if cfg.run.memory_report:
        callbacks.append(MemoryReport(run.results / "memory.json"))
    if cfg.throughput.enabled:
        callbacks.append(ThroughputMonitor(cfg.throughput, run.results / "throughput.json"))
    callbacks += registry.callbacks(run.root)
    callbacks += [load_object(spec.target, "callbacks")(**spec.kwargs) for spec in cfg.callbacks]
    trainer = build_trainer(cfg, run, callbacks, fit=True)
    log = TrainingLog(run.logs / "metrics.csv") if resume_from and trainer.is_global_zero else None
    started = time.perf_counter()
    try:
        trainer.fit(model, datamodule=data, ckpt_path=resume_from, weights_only=True)
    finally:
        if log is not None:
            log.restore()
    # Every rank calls broadcast (a collective); afterwards all hold rank zero's choice (DESIGN.md rule 1).
    best = trainer.strategy.broadcast(checkpoint.best_model_path or checkpoint.last_model_path, src=0)
    score = checkpoint.best_model_score
    return {
        "best_checkpoint": best,
        "last_checkpoint": checkpoint.last_model_path or None,
        "monitor": monitor,
        "best_score": float(score) if score is not None else None,
        "resumed_from": resume_from,
        "global_step": trainer.global_step,
        "fit_seconds": round(time.perf_counter() - started, 2),
        "checkpoint_seconds": checkpoint.stall_summary(),  # rank zero's: the loop blocked, and each write
    }


def check_steps(cfg: DsfConfig, model: pl.LightningModule, then_test: bool) -> None:
    """Before the run folder exists: the steps the pipeline will call are there. `dsf run` tests the best
    checkpoint, so a module without test_step is refused (train it alone with `dsf train`); early stopping
    watches a validation metric, so it needs a validation_step."""
    name = type(model).__name__
    if then_test and not is_overridden("test_step", model):
        raise ConfigError(
            f"model.module: {name} has no test_step, so `dsf run` could not test it after training; add a test_step "
            "that returns {'preds': ..., 'target': ...} (or logs test_<metric>), or train it alone with `dsf train`"
        )
    if cfg.early_stopping.enabled and not is_overridden("validation_step", model):
        raise ConfigError(
            f"early_stopping.enabled: {name} has no validation_step, so {cfg.early_stopping.monitor} is never "
            "logged; add a validation_step or set early_stopping.enabled=false"
        )
