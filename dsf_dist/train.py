"""Build the pl.Trainer from config and run fit; the seed's train.py."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from dsf_dist.config import DsfConfig
from dsf_dist.hooks.checkpoint import checkpoint_callback, early_stopping_callback
from dsf_dist.hooks.memory import MemoryReport
from dsf_dist.hooks.preemption import Preemption, TrainingLog
from dsf_dist.hooks.progress import NoProfiler, ProgressBar
from dsf_dist.hooks.rng import RNGState
from dsf_dist.hooks.throughput import ThroughputMonitor
from dsf_dist.hooks.watchdog import Watchdog
from dsf_dist.imports import load_object
from dsf_dist.launch.environment import resolve
from dsf_dist.loggers import RecordConfig, build_loggers
from dsf_dist.run_folder import RunFolder
from dsf_dist.strategy import build_strategy


def build_trainer(cfg: DsfConfig, run: RunFolder, callbacks: list[Callback], fit: bool) -> pl.Trainer:
    """One Trainer recipe for fit and for test; test trainers log nothing and save nothing."""
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks = [*callbacks, ProgressBar()]
    if fit:
        callbacks = [*callbacks, RecordConfig(cfg, run)]
    watchdog = Watchdog(cfg.strategy.timeouts, run.logs, spawn=cfg.strategy.name == "ddp_spawn")
    callbacks = [*callbacks, watchdog]  # last: its step deadline covers the other callbacks' work
    return pl.Trainer(
        **{"profiler": NoProfiler(), **cfg.trainer},
        strategy=build_strategy(cfg.strategy, cfg.trainer),
        callbacks=callbacks,
        logger=build_loggers(cfg, run) if fit else False,
        enable_checkpointing=fit,
        default_root_dir=run.root,
        plugins=cluster_environment(),
    )


def cluster_environment() -> list[Any]:
    """The environment Lightning would detect itself, but SLURM's without auto-requeue (it checkpoints inside the
    signal handler; dsf's Preemption callback requeues instead), and torchrun's even inside a SLURM job.
    In a Ray Train worker: Ray's, which reads the ranks from Ray's worker context."""
    from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if resolve().launcher == "ray":
        from dsf_dist.launch.ray import cluster_environment as ray_environment

        return [ray_environment()]
    if resolve().launcher == "torchrun":
        return [TorchElasticEnvironment()]
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def fit(
    cfg: DsfConfig,
    run: RunFolder,
    model: pl.LightningModule,
    data: pl.LightningDataModule,
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Train (or continue from `resume_from`); return the best and last checkpoints, identical on every rank."""
    checkpoint = checkpoint_callback(cfg.checkpoint, run.checkpoints)
    preemption = Preemption(checkpoint, cfg.run.max_requeues, run.config)
    callbacks = [checkpoint, preemption, RNGState(), *early_stopping_callback(cfg.early_stopping)]
    if cfg.run.memory_report:
        callbacks.append(MemoryReport(run.results / "memory.json"))
    if cfg.throughput.enabled:
        callbacks.append(ThroughputMonitor(cfg.throughput, run.results / "throughput.json"))
    if resolve().launcher == "ray":  # each epoch's checkpoint reported to Ray Train, for its restarts
        from dsf_dist.launch.ray import RayReport

        callbacks.append(RayReport(run.root))
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
        "monitor": cfg.checkpoint.monitor,
        "best_score": float(score) if score is not None else None,
        "resumed_from": resume_from,
        "global_step": trainer.global_step,
        "fit_seconds": round(time.perf_counter() - started, 2),
    }
