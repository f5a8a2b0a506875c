"""Experiment loggers from `logging.loggers`: CSV (logs/metrics.csv), TensorBoard (logs/tensorboard/) and MLflow.

A resumed fit keeps logs/metrics.csv whole (TrainingLog): the rows logged before the stop stay.

One run per job, not one per rank: Lightning's loggers write from global rank zero only, and MLflow's run id is
kept in logs/mlflow.json so a resumed job (and `dsf compare` later) adds to the same run. Each run gets the
resolved config when fit starts and the comparison once it is made.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from dsf_dist import files
from dsf_dist.config.schema import DsfConfig
from dsf_dist.run_folder import RunFolder

MLFLOW_RECORD = "mlflow.json"


def mlflow_uri(cfg: DsfConfig, run: RunFolder) -> str:
    uri = cfg.logging.mlflow_tracking_uri or (run.root / "mlruns").resolve().as_uri()
    if uri.startswith("file:"):
        # MLflow 3 refuses its file store unless told otherwise; a local file store is what this setting asks for.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def build_loggers(cfg: DsfConfig, run: RunFolder) -> list[Any]:
    from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger

    loggers: list[Any] = []
    for name in cfg.logging.loggers:
        if name == "csv":
            loggers.append(CSVLogger(run.logs, name="", version=""))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(run.logs, name="tensorboard", version="", default_hp_metric=False))
        else:
            record = run.logs / MLFLOW_RECORD
            loggers.append(
                MLFlowLogger(
                    experiment_name=cfg.logging.mlflow_experiment,
                    run_name=cfg.run.name,
                    tracking_uri=mlflow_uri(cfg, run),
                    run_id=files.read_json(record)["run_id"] if record.is_file() else None,  # a resumed job
                    tags={"dsf.run_folder": str(run.root.resolve())},
                )
            )
    return loggers


def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys (model.optimizer.lr), the way both trackers show parameters."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class RecordConfig(pl.Callback):
    """Global rank zero, as fit starts (inside the worker, so it also holds under ddp_spawn)."""

    def __init__(self, cfg: DsfConfig, run: RunFolder) -> None:
        self.cfg, self.run = cfg, run

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            record_config(self.cfg, self.run, trainer.loggers)


def record_config(cfg: DsfConfig, run: RunFolder, loggers: list[Any]) -> None:
    """The resolved config as parameters, and config.yaml itself."""
    from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger

    params = flat(cfg.model_dump(mode="json"))
    resumed = (run.logs / MLFLOW_RECORD).is_file()
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            files.write_json(run.logs / MLFLOW_RECORD, {"tracking_uri": logger._tracking_uri, "run_id": logger.run_id})
            if not resumed:  # MLflow parameters are write-once; a resumed run keeps the ones it started with
                logger.log_hyperparams(params)
            logger.experiment.log_artifact(logger.run_id, str(run.config))
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text("config", _code(run.config.read_text()))


def _code(text: str) -> str:
    return "```\n" + text + "\n```"  # TensorBoard renders text summaries as markdown


def attach_comparison(cfg: DsfConfig, run: RunFolder, report: dict[str, Any]) -> None:
    """Rank zero, after the comparison: its files and scores into the training run of each tracker."""
    metrics = {
        f"comparison/{side}_{metric}": float(pair[key])
        for metric, pair in report.get("comparison", {}).items()
        for side, key in (("trained", "trained"), ("existing", "eval"))
        if isinstance(pair.get(key), (int, float))
    }
    attachments = [run.results / name for name in ("comparison.json", "comparison.md", "test.json", "eval.json")]
    if "mlflow" in cfg.logging.loggers and (run.logs / MLFLOW_RECORD).is_file():
        _attach_mlflow(cfg, run, metrics, [path for path in attachments if path.is_file()])
    if "tensorboard" in cfg.logging.loggers:
        _attach_tensorboard(cfg, run, metrics)


def _attach_mlflow(cfg: DsfConfig, run: RunFolder, metrics: dict[str, float], attachments: list[Path]) -> None:
    from mlflow.tracking import MlflowClient

    record = files.read_json(run.logs / MLFLOW_RECORD)
    mlflow_uri(cfg, run)  # the file-store opt-in, when this process is a later `dsf compare`
    client = MlflowClient(record["tracking_uri"])
    for key, value in metrics.items():
        client.log_metric(record["run_id"], key, value)
    for path in attachments:
        client.log_artifact(record["run_id"], str(path), artifact_path="comparison")


def _attach_tensorboard(cfg: DsfConfig, run: RunFolder, metrics: dict[str, float]) -> None:
    from pytorch_lightning.loggers import TensorBoardLogger

    logger = TensorBoardLogger(run.logs, name="tensorboard", version="", default_hp_metric=False)
    # hparams view: the config's parameters against the comparison's numbers, in the same run folder.
    logger.log_hyperparams(_hparam_values(flat(cfg.model_dump(mode="json"))), metrics)
    markdown = run.results / "comparison.md"
    if markdown.is_file():
        logger.experiment.add_text("comparison", markdown.read_text())
    logger.finalize("success")


def _hparam_values(params: dict[str, Any]) -> dict[str, Any]:
    """TensorBoard's hparams plugin takes numbers, strings and booleans only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}


class TrainingLog:
    """Keeps logs/metrics.csv whole across a resume: Lightning's CSVLogger deletes the file when it starts in a
    folder that has one, which would drop every row logged before the preemption.

    Rank zero reads the rows before fit and, once fit ends (finished or preempted again), puts back those logged
    before the first step the resumed fit logged, ahead of the new rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.earlier = self._rows() if path.is_file() else []

    def restore(self) -> None:
        if not self.earlier:
            return
        later = self._rows() if self.path.is_file() else []
        first_new = min((_step(row) for row in later), default=float("inf"))
        rows = [row for row in self.earlier if _step(row) < first_new] + later
        columns = sorted({key for row in rows for key in row})  # Lightning's own column order: sorted
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        files.write_text(self.path, buffer.getvalue())

    def _rows(self) -> list[dict[str, str]]:
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return float("nan")
