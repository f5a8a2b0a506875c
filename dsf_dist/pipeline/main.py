"""The seed's Main: split -> data module -> model -> fit -> test best -> eval existing -> compare.

Subclass Main and override split(), create_data_module() or define_model() to bring your own data
and model (the seed's extension points), or name them by import path in the config. What is learned and
how it is scored is the task's (dsf_dist/tasks/): Main hands it every task-specific step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from dsf_dist import files
from dsf_dist.checkpoints import WEIGHTS_FILE, checkpoint_format, load_into
from dsf_dist.checkpoints.architecture import checkpoint_hparams, exported_model
from dsf_dist.comparison.render import write_reports
from dsf_dist.comparison.report import build_report, scalar_report
from dsf_dist.config import DsfConfig, load_config
from dsf_dist.config.loader import describe
from dsf_dist.config.schema import ModelConfig
from dsf_dist.data import Splits
from dsf_dist.data.datamodule import DataModule
from dsf_dist.errors import ConfigError, DsfError
from dsf_dist.hooks.loggers import attach_comparison
from dsf_dist.imports import load_object
from dsf_dist.launchers.environment import resolve
from dsf_dist.models.units import top_level_units, with_wrap_units
from dsf_dist.pipeline.existing import predict_with_callable
from dsf_dist.pipeline.testing import predict_test_set
from dsf_dist.pipeline.trainer import check_steps, fit
from dsf_dist.run_folder import RunFolder, best_checkpoint, name_run
from dsf_dist.scoring.predictions import Predictions, require_same_samples
from dsf_dist.strategy.checks import check_model
from dsf_dist.tasks import Task, task_for


def as_config(cfg: DsfConfig | dict[str, Any] | str | Path) -> DsfConfig:
    if isinstance(cfg, DsfConfig):
        return cfg
    if isinstance(cfg, dict):
        from pydantic import ValidationError

        try:
            return DsfConfig.model_validate(cfg)
        except ValidationError as err:
            raise ConfigError(describe(err, source=None)) from None
    return load_config(cfg)


class Main:
    def __init__(
        self,
        cfg: DsfConfig | dict[str, Any] | str | Path,
        dataset_path: str | None = None,
        test_dataset_path: str | None = None,
        run_dir: str | Path | None = None,
        task: Task | None = None,
    ) -> None:
        """`task`: the config's task, made and checked by the caller (the CLI: so that refusals come before
        Lightning loads, and what `dsf run` read of the data is not read again)."""
        cfg = as_config(cfg)
        if dataset_path is not None or test_dataset_path is not None:
            cfg = cfg.model_copy(deep=True)
            cfg.data.path = dataset_path or cfg.data.path
            cfg.data.test_path = test_dataset_path or cfg.data.test_path
        if task is None:
            task = task_for(cfg)
            task.check(cfg)
        self.task = task
        self.env = resolve()
        self.cfg = cfg if run_dir else name_run(cfg, self.env)
        self.run = RunFolder(Path(run_dir) if run_dir else Path(self.cfg.run.output_root) / self.cfg.run.name)
        self.task.run_root = self.run.root
        self._splits: Splits | None = None

    # -- extension points -------------------------------------------------------------------------
    def split(self) -> Splits:
        """Train / val / test datasets; seeded, so every process and every later test sees the same split."""
        if self._splits is None:
            datamodule = self.cfg.data.datamodule
            self._splits = splits_of(self.create_data_module()) if datamodule else self.task.splits(self.cfg)
        return self._splits

    def create_data_module(self) -> pl.LightningDataModule:
        if self.cfg.data.datamodule:
            return load_object(self.cfg.data.datamodule, "data.datamodule")(**self.cfg.data.datamodule_kwargs)
        splits, data = self.split(), self.cfg.data
        collate = self.task.collate(self.cfg)
        return DataModule(splits.train, splits.val, splits.test, data.batch_size, data.num_workers, collate)

    def define_model(self, model: ModelConfig | None = None) -> pl.LightningModule:
        """The LightningModule of `model` (default: this config's model section)."""
        model = model or self.cfg.model
        if model.module:
            return load_object(model.module, "model.module")(**model.module_kwargs)
        return self.task.module(self.cfg, model, self.split())

    # -- the pipeline -----------------------------------------------------------------------------
    def execute_trainer(self) -> str:
        """Fit (or continue the run's last checkpoint when run.resume is auto); return the best checkpoint's
        path, the same on every rank. Everything that can be refused is checked before the run folder exists."""
        return self._fit(then_test=False)

    def _fit(self, then_test: bool) -> str:
        pl.seed_everything(self.cfg.run.seed, workers=True, verbose=False)
        model, data = self.define_model(), self.create_data_module()
        self.cfg = with_wrap_units(self.cfg, self._wrap_units(model))
        check_model(self.cfg, model)
        check_steps(self.cfg, model, then_test)
        self.task.check_before_fit(self.cfg)
        resume_from = self.run.prepare(self.cfg, write=self.env.is_rank_zero)
        if self.env.is_rank_zero:
            self.task.prepare_run(self.cfg)
        outcome = fit(self.cfg, self.run, model, data, resume_from)
        if self.env.is_rank_zero:
            self.run.record_training(outcome)
        return outcome["best_checkpoint"]

    def execute_test(self, model_path: str | None = None, name: str = "test") -> dict[str, Any]:
        """Test a checkpoint of any strategy (default: the run's best) on the test split, under the configured
        strategy, into results/<name>.json and <name>_predictions.npz; results on rank zero, {} elsewhere."""
        model_path = model_path or self._best_checkpoint()
        model = self.define_model()
        self.cfg = with_wrap_units(self.cfg, self._wrap_units(model))
        load_into(model, model_path)
        out = self.run.results / f"{name}_predictions.npz"
        logged = predict_test_set(self.cfg, self.run, model, self.create_data_module(), out)
        source = {"model": self.run.inside(str(model_path))}  # relative to the run folder, which may move
        if logged is not None:
            return self._logged(logged, name, source, type(model).__name__)
        return self._score(out, name, source)

    def execute_eval(self) -> dict[str, Any] | None:
        """Score the existing model on the same test samples; None when existing_model.kind is 'none'."""
        spec = self.cfg.existing_model
        out = self.run.results / "eval_predictions.npz"
        if spec.kind == "none":
            return None
        if spec.kind in ("checkpoint", "previous", "pretrained", "base"):
            module = self._existing_module()
            logged = predict_test_set(self.cfg, self.run, module, self.create_data_module(), out)
            if logged is not None:
                return self._logged(logged, "eval", {"model": self.existing_model_name()}, type(module).__name__)
        elif self.env.is_rank_zero:
            predict_with_callable(spec, self.split(), out, self.task.test_targets(self.split()))
        return self._score(out, "eval", {"model": self.existing_model_name()})

    def compare(self, test_results: dict[str, Any], eval_results: dict[str, Any] | None) -> dict[str, Any] | None:
        """Rank zero: the seed's comparison with the task's numbers, paired statistics and gates, written to
        results/comparison.json, comparison.md, comparison.html and its PNG plots. report['gates']['passed']
        says whether the trained model passed the configured gates."""
        if not self.env.is_rank_zero or eval_results is None or not self.cfg.comparison.enabled:
            return None
        results = self.run.results
        names = (test_results.get("model", "?"), self.existing_model_name())
        if test_results.get("per_sample", True) and eval_results.get("per_sample", True):
            trained = Predictions.load(results / "test_predictions.npz")
            existing = Predictions.load(results / "eval_predictions.npz")
            require_same_samples(trained, existing, "test_predictions.npz", "eval_predictions.npz")
            report = build_report(self.cfg, test_results, eval_results, trained, existing, names, self.task)
        else:
            report = scalar_report(self.cfg, test_results, eval_results, names)
        write_reports(results, report, [("trained", self.run.logs / "metrics.csv")])
        attach_comparison(self.cfg, self.run, report)
        return report

    def execute(self) -> dict[str, Any] | None:
        """`dsf run`: the whole pipeline. Returns the comparison report on rank zero."""
        best = self._fit(then_test=True)
        test_results = self.execute_test(best)
        return self.compare(test_results, self.execute_eval())

    # -- helpers ----------------------------------------------------------------------------------
    def _wrap_units(self, model: pl.LightningModule) -> list[str]:
        """FSDP units when the config names none: the task's (a transformer's blocks), or a user module's
        submodules."""
        return top_level_units(model) if self.cfg.model.module else self.task.wrap_units(model)

    def existing_model_name(self) -> str:
        spec = self.cfg.existing_model
        if spec.kind == "base":
            return f"{self.cfg.model.pretrained} (the base model)"
        return spec.target if spec.kind == "callable" else spec.path or "none"

    def _existing_module(self) -> pl.LightningModule:
        """The existing model with its weights: a pretrained folder and a built-in module's .ckpt bring their own
        architecture; other checkpoints take this config's."""
        cfg = base_as_pretrained(self.cfg)
        spec = cfg.existing_model
        if spec.kind == "pretrained":
            own = self.task.pretrained_module(cfg)
            if own is not None:
                return own
            model = self.define_model(exported_model(Path(spec.path), self.cfg.model))
            load_into(model, Path(spec.path) / WEIGHTS_FILE)
            return model
        path = spec.path if spec.kind == "checkpoint" else best_checkpoint(RunFolder(Path(spec.path)))
        model = None
        if checkpoint_format(Path(path)) == "lightning" and not self.cfg.model.module:
            hparams = checkpoint_hparams(path, self.cfg.model)
            model = self.task.module_from_hparams(hparams) if hparams else None
        model = model or self.define_model()
        load_into(model, path)
        return model

    def _best_checkpoint(self) -> str:
        return best_checkpoint(self.run)

    def _logged(self, logged: dict[str, float], name: str, extra: dict[str, Any], module: str) -> dict[str, Any]:
        """The configured metrics as a test_step logged them (as `accuracy` or `test_accuracy`)."""
        wanted = [m for m, on in self.cfg.metrics.model_dump().items() if on is True]
        found = {m: logged.get(f"test_{m}", logged.get(m)) for m in wanted}
        found = {m: value for m, value in found.items() if value is not None}
        if not found:
            raise DsfError(
                f"{module}.test_step neither returns {{'preds': ..., 'target': ...}} nor logs any of "
                f"{', '.join('test_' + m for m in wanted)}; return predictions or log the metrics"
            )
        if not self.env.is_rank_zero:
            return {}
        results = {**extra, **found, "per_sample": False}
        files.write_json(self.run.results / f"{name}.json", results)
        return results

    def _score(self, predictions: Path, name: str, extra: dict[str, Any]) -> dict[str, Any]:
        if not self.env.is_rank_zero:
            return {}
        results = {**extra, **self.task.score_file(self.cfg, predictions, self.split())}
        files.write_json(self.run.results / f"{name}.json", results)
        return results


def base_as_pretrained(cfg: DsfConfig) -> DsfConfig:
    """existing_model.kind base is the pretrained folder the run fine-tunes: kind pretrained with model.pretrained's
    path, so every task loads it as it loads any pretrained existing model."""
    if cfg.existing_model.kind != "base":
        return cfg
    # One copy with both fields: assigning kind first would validate a pretrained kind without its path.
    existing = cfg.existing_model.model_copy(update={"kind": "pretrained", "path": cfg.model.pretrained})
    return cfg.model_copy(update={"existing_model": existing})


def splits_of(datamodule: pl.LightningDataModule) -> Splits:
    """A user's LightningDataModule seen as Splits: the datasets behind its three loaders, in loader order."""
    datamodule.setup("fit")
    datamodule.setup("test")
    loaders = (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader())
    return Splits(*(loader.dataset for loader in loaders))
