"""The seed's Main: split -> data module -> model -> fit -> test best -> eval existing -> compare.

Subclass Main and override split(), create_data_module() or define_model() to bring your own data
and model (the seed's extension points), or name them by import path in the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from dsf_dist import eval as existing
from dsf_dist import hf_task, io
from dsf_dist.checkpoints import WEIGHTS_FILE, checkpoint_format, load_into, load_lightning_file
from dsf_dist.compare import Predictions, build_report, require_same_samples, scalar_report
from dsf_dist.config import DsfConfig, load_config
from dsf_dist.config.loader import describe
from dsf_dist.config.schema import ModelConfig
from dsf_dist.data import Splits, split_dataset
from dsf_dist.data.datamodule import DataModule
from dsf_dist.data.digits import digits
from dsf_dist.entities import entity_scores, to_words
from dsf_dist.errors import ConfigError, DsfError
from dsf_dist.imports import load_object
from dsf_dist.launch.environment import resolve
from dsf_dist.loggers import attach_comparison
from dsf_dist.metrics import score
from dsf_dist.models.plmodel import PlModel
from dsf_dist.models.units import top_level_units, transformer_blocks, with_wrap_units
from dsf_dist.reports import write_reports
from dsf_dist.run_folder import RunFolder, best_checkpoint, name_run
from dsf_dist.strategy.checks import check_model
from dsf_dist.test import predict_test_set
from dsf_dist.train import fit


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
    ) -> None:
        cfg = as_config(cfg)
        if dataset_path is not None or test_dataset_path is not None:
            cfg = cfg.model_copy(deep=True)
            cfg.data.path = dataset_path or cfg.data.path
            cfg.data.test_path = test_dataset_path or cfg.data.test_path
        self.env = resolve()
        self.cfg = cfg if run_dir else name_run(cfg, self.env)
        self.run = RunFolder(Path(run_dir) if run_dir else Path(self.cfg.run.output_root) / self.cfg.run.name)
        self._splits: Splits | None = None

    # -- extension points -------------------------------------------------------------------------
    def split(self) -> Splits:
        """Train / val / test datasets; seeded, so every process and every later test sees the same split."""
        if self._splits is None and self.cfg.data.datamodule:
            self._splits = splits_of(self.create_data_module())
        if self._splits is None and self.tokens:
            self._splits = hf_task.splits(self.cfg)
        if self._splits is None:
            data = self.cfg.data
            make = digits if data.dataset == "digits" else load_object(data.dataset, "data.dataset")
            dataset = make(data.path, **data.dataset_kwargs)
            test_set = make(data.test_path, **data.dataset_kwargs) if data.test_path else None
            self._splits = split_dataset(dataset, data.split, self.cfg.run.seed, test_set)
        return self._splits

    def create_data_module(self) -> pl.LightningDataModule:
        if self.cfg.data.datamodule:
            return load_object(self.cfg.data.datamodule, "data.datamodule")(**self.cfg.data.datamodule_kwargs)
        splits, data = self.split(), self.cfg.data
        collate = hf_task.collate(self.cfg) if self.tokens else None
        return DataModule(splits.train, splits.val, splits.test, data.batch_size, data.num_workers, collate)

    def define_model(self, model: ModelConfig | None = None) -> pl.LightningModule:
        """The LightningModule of `model` (default: this config's model section)."""
        model = model or self.cfg.model
        if model.module:
            return load_object(model.module, "model.module")(**model.module_kwargs)
        if self.tokens:
            return hf_task.module(self.cfg, model.model_dump(mode="json"))
        input_size, output_size = self._sizes()
        return PlModel(model.model_dump(mode="json"), input_size, output_size)

    # -- the pipeline -----------------------------------------------------------------------------
    def execute_trainer(self) -> str:
        """Fit (or continue the run's last checkpoint when run.resume is auto); return the best checkpoint's
        path, the same on every rank. Everything that can be refused is checked before the run folder exists."""
        pl.seed_everything(self.cfg.run.seed, workers=True, verbose=False)
        model, data = self.define_model(), self.create_data_module()
        self.cfg = with_wrap_units(self.cfg, self._wrap_units(model))
        check_model(self.cfg, model)
        if self.tokens:
            hf_task.check_existing(self.cfg)
        resume_from = self.run.prepare(self.cfg, write=self.env.is_rank_zero)
        outcome = fit(self.cfg, self.run, model, data, resume_from)
        if self.env.is_rank_zero:
            io.write_json(self.run.results / "train.json", outcome)
        return outcome["best_checkpoint"]

    def execute_test(self, model_path: str | None = None) -> dict[str, Any]:
        """Test a checkpoint of any strategy (default: the run's best) on the test split, under the configured
        strategy; results on rank zero, {} elsewhere."""
        model_path = model_path or self._best_checkpoint()
        model = self.define_model()
        self.cfg = with_wrap_units(self.cfg, self._wrap_units(model))
        load_into(model, model_path)
        out = self.run.results / "test_predictions.npz"
        logged = predict_test_set(self.cfg, self.run, model, self.create_data_module(), out)
        if logged is not None:
            return self._logged(logged, "test", {"model": str(model_path)}, type(model).__name__)
        return self._score(out, "test", {"model": str(model_path)})

    def execute_eval(self) -> dict[str, Any] | None:
        """Score the existing model on the same test samples; None when existing_model.kind is 'none'."""
        spec = self.cfg.existing_model
        out = self.run.results / "eval_predictions.npz"
        if spec.kind == "none":
            return None
        if spec.kind in ("checkpoint", "previous", "pretrained"):
            module = self._existing_module()
            logged = predict_test_set(self.cfg, self.run, module, self.create_data_module(), out)
            if logged is not None:
                return self._logged(logged, "eval", {"model": self.existing_model_name()}, type(module).__name__)
        elif self.env.is_rank_zero:
            existing.predict_with_callable(spec, self.split(), out)
        return self._score(out, "eval", {"model": self.existing_model_name()})

    def compare(self, test_results: dict[str, Any], eval_results: dict[str, Any] | None) -> dict[str, Any] | None:
        """Rank zero: the seed's comparison with per-class numbers, paired statistics and gates, written to
        results/comparison.json, comparison.md, comparison.html and its PNG plots. report['gates']['passed']
        says whether the trained model passed the configured gates."""
        if not self.env.is_rank_zero or eval_results is None or not self.cfg.comparison.enabled:
            return None
        results = self.run.results
        names = (test_results.get("model", "?"), self.existing_model_name())
        if not (test_results.get("per_sample", True) and eval_results.get("per_sample", True)):
            report = scalar_report(self.cfg, test_results, eval_results, names)
            write_reports(results, report, [("trained", self.run.logs / "metrics.csv")])
            attach_comparison(self.cfg, self.run, report)
            return report
        trained = Predictions.load(results / "test_predictions.npz")
        existing = Predictions.load(results / "eval_predictions.npz")
        require_same_samples(trained, existing, "test_predictions.npz", "eval_predictions.npz")
        report = build_report(self.cfg, test_results, eval_results, trained, existing, names)
        write_reports(results, report, [("trained", self.run.logs / "metrics.csv")])
        attach_comparison(self.cfg, self.run, report)
        return report

    def execute(self) -> dict[str, Any] | None:
        """`dsf run`: the whole pipeline. Returns the comparison report on rank zero."""
        best = self.execute_trainer()
        test_results = self.execute_test(best)
        return self.compare(test_results, self.execute_eval())

    # -- helpers ----------------------------------------------------------------------------------
    def _wrap_units(self, model: pl.LightningModule) -> list[str]:
        """FSDP units when the config names none: a transformer's blocks, or a user module's submodules."""
        if self.tokens:
            return transformer_blocks(model)
        return top_level_units(model) if self.cfg.model.module else []

    @property
    def tokens(self) -> bool:
        """The built-in Hugging Face token-classification task (not a user's own module or data module)."""
        return self.cfg.model.task == "token_classification" and not self.cfg.model.module

    def existing_model_name(self) -> str:
        spec = self.cfg.existing_model
        return spec.target if spec.kind == "callable" else spec.path or "none"

    def _existing_module(self) -> pl.LightningModule:
        """The existing model with its weights: a pretrained folder and a PlModel .ckpt bring their own
        architecture; other checkpoints take this config's."""
        spec = self.cfg.existing_model
        if spec.kind == "pretrained" and self.tokens:
            return hf_task.existing_module(self.cfg)
        if spec.kind == "pretrained":
            model = self.define_model(load_config(Path(spec.path) / "config.yaml").model)
            load_into(model, Path(spec.path) / WEIGHTS_FILE)
            return model
        path = spec.path if spec.kind == "checkpoint" else best_checkpoint(RunFolder(Path(spec.path)))
        model = self.define_model()
        if checkpoint_format(Path(path)) == "lightning" and not self.cfg.model.module and not self.tokens:
            hparams = load_lightning_file(path).get("hyper_parameters")
            model = PlModel(**hparams) if hparams else model
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
        io.write_json(self.run.results / f"{name}.json", results)
        return results

    def _score(self, predictions: Path, name: str, extra: dict[str, Any]) -> dict[str, Any]:
        if not self.env.is_rank_zero:
            return {}
        if self.tokens:
            to_words(predictions)
        arrays = io.read_arrays(predictions)
        results = {
            **extra,
            **score(arrays["preds"], arrays["target"], self.cfg.model.task, self.cfg.metrics, self._num_classes()),
        }
        if self.tokens:
            results["labels"] = hf_task.labels(self.cfg)
            if self.cfg.metrics.entity_f1:
                results.update(entity_scores(arrays, results["labels"]))
        io.write_json(self.run.results / f"{name}.json", results)
        return results

    def _num_classes(self) -> int | None:
        """Fixed for both models, so a class missing from the test split still gets its matrix row."""
        if self.cfg.model.num_classes or self.cfg.model.task == "regression":
            return self.cfg.model.num_classes
        if self.tokens:
            return len(hf_task.labels(self.cfg))
        return self._sizes()[1]

    def _sizes(self) -> tuple[int, int]:
        """Input features and output width, from the config or else from the training data."""
        model, train = self.cfg.model, self.split().train
        inputs, target = train[0]
        input_size = model.input_size or inputs.numel()
        if model.task == "regression":
            return input_size, target.numel()
        classes = model.num_classes or int(max(int(train[i][1]) for i in range(len(train)))) + 1
        return input_size, classes


def splits_of(datamodule: pl.LightningDataModule) -> Splits:
    """A user's LightningDataModule seen as Splits: the datasets behind its three loaders, in loader order."""
    datamodule.setup("fit")
    datamodule.setup("test")
    loaders = (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader())
    return Splits(*(loader.dataset for loader in loaders))
