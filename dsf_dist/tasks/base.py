"""The Task seam: what is learned and how it is scored. `Main` hands every task-specific step to its task, so
nothing outside dsf_dist/tasks/ asks which task it is running (DESIGN.md).

A task provides its splits and collate, the LightningModule for a model config, the existing model's module,
pre-flight checks, FSDP wrap units, how saved predictions are scored, and what it adds to the comparison report;
a task that makes files for its run (a tokenizer it trained) keeps them in the run folder, and a Hugging Face task
writes its model in Hugging Face's own form (`dsf export --format hf`).
This base is the task on a map-style dataset of (input, target) pairs (`data.dataset`: the bundled digits or a
function of yours) with the built-in PlModel; classification and regression differ only in their objective and
their scoring. Tasks are imported without torch: heavy imports sit inside the methods that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dsf_dist.config.schema import DsfConfig, MetricsConfig, ModelConfig
from dsf_dist.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import numpy as np
    import pytorch_lightning as pl
    from torch import nn

    from dsf_dist.data import Splits
    from dsf_dist.scoring.predictions import Predictions


class Task:
    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    """The scalar metrics its scoring can compute (each a MetricsConfig flag and an entry of config/metrics.py)."""
    objective: ClassVar[str]
    """The built-in PlModel's objective (dsf_dist/models/plmodel.py)."""
    run_root: Path | None = None
    """The run folder this task works for, set by Main before any other step (None: no run yet, e.g. a config
    check). Files the task made for the run live there, so other ranks and later verbs read the same ones."""

    # -- before anything runs (torch-free) -----------------------------------------------------------------
    def check(self, cfg: DsfConfig) -> None:
        """Every check of a loaded config against this task: what every task asks, then its own check_config."""
        self.check_primary_metric(cfg)
        self.check_config(cfg)

    def check_config(self, cfg: DsfConfig) -> None:
        """What this task cannot run with, refused in one line when the config loads."""

    def computed_metrics(self, cfg: DsfConfig) -> list[str]:
        """The scalar metrics a run of this config reports: the task's, where their metrics.* flag is on."""
        return [metric for metric in self.metrics if getattr(cfg.metrics, metric, True) is True]

    def check_primary_metric(self, cfg: DsfConfig) -> None:
        """comparison.primary_metric leads the summary line: it must be a metric this run computes."""
        primary, computed = cfg.comparison.primary_metric, self.computed_metrics(cfg)
        if not cfg.comparison.enabled or cfg.existing_model.kind == "none" or primary in computed:
            return
        if primary in self.metrics:
            fix = f"set metrics.{primary}: true, or use one of {', '.join(computed) or 'the enabled metrics'}"
        else:
            flags = ", ".join(f"metrics.{metric}" for metric in self.metrics)
            fix = f"use one of {', '.join(computed)}" if computed else f"enable one of {flags}"
        raise ConfigError(f"comparison.primary_metric: '{primary}' is not computed by a {self.name} run; {fix}")

    def check_data(self, cfg: DsfConfig) -> None:
        """The task's own files (data, tokenizer, a pretrained head), read by `dsf run` and `dsf train` before
        Lightning loads, so that their refusals come in seconds; what is read stays on this task, which the
        pipeline then uses. Default: nothing (what the built-in datasets hold is checked when they are split)."""

    def check_before_fit(self, cfg: DsfConfig) -> None:
        """What only the task's own files show (an existing model's labels, say), before the run folder exists."""

    def prepare_run(self, cfg: DsfConfig) -> None:
        """Rank zero, once run_root and its config.yaml exist and before training starts: write the files this
        task keeps in the run folder (a tokenizer it trained on the training split). Default: none."""

    # -- data ------------------------------------------------------------------------------------------------
    def splits(self, cfg: DsfConfig) -> Splits:
        """Train / val / test: data.dataset (digits, or fn(path, **dataset_kwargs)), split by data.split or with
        data.test_path's own test set; seeded, so every process and every later test sees the same split."""
        from dsf_dist.data import split_dataset
        from dsf_dist.data.digits import digits
        from dsf_dist.imports import load_object

        data = cfg.data
        make = digits if data.dataset == "digits" else load_object(data.dataset, "data.dataset")
        dataset = make(data.path, **data.dataset_kwargs)
        test_set = make(data.test_path, **data.dataset_kwargs) if data.test_path else None
        return split_dataset(dataset, data.split, cfg.run.seed, test_set)

    def collate(self, cfg: DsfConfig) -> Callable[[list[Any]], Any] | None:
        """How samples become a batch; None: torch's default."""
        return None

    # -- the model -------------------------------------------------------------------------------------------
    def module(self, cfg: DsfConfig, model: ModelConfig, splits: Splits) -> pl.LightningModule:
        """The built-in LightningModule for `model` (a config's model section)."""
        from dsf_dist.models.plmodel import PlModel

        input_size, output_size = self.sizes(model, splits)
        return PlModel(model.model_dump(mode="json"), input_size, output_size, objective=self.objective)

    def module_from_hparams(self, hparams: dict[str, Any]) -> pl.LightningModule | None:
        """A built-in module rebuilt from a Lightning checkpoint's hyper-parameters (it brings its own
        architecture); None when this task's checkpoints do not."""
        from dsf_dist.models.plmodel import PlModel

        return PlModel(**{**hparams, "objective": self.objective})

    def pretrained_module(self, cfg: DsfConfig) -> pl.LightningModule | None:
        """existing_model.kind pretrained in this task's own format; None: a folder `dsf export` wrote."""
        return None

    def wrap_units(self, model: nn.Module) -> list[str]:
        """FSDP wrap units of the built-in module when strategy.fsdp names none."""
        return []

    def sizes(self, model: ModelConfig, splits: Splits) -> tuple[int, int]:
        """Input features and output width, from the config or else from the training data."""
        inputs, _ = splits.train[0]
        return model.input_size or inputs.numel(), self.output_size(model, splits)

    def output_size(self, model: ModelConfig, splits: Splits) -> int:
        raise NotImplementedError

    def num_classes(self, cfg: DsfConfig, splits: Splits) -> int | None:
        """Fixed for both models, so a class missing from the test split still gets its matrix row; None where
        the task has no classes."""
        return None

    # -- scoring ---------------------------------------------------------------------------------------------
    def test_targets(self, splits: Splits) -> np.ndarray:
        """The target of every test sample, in order, as a predictions file stores it beside an existing-model
        callable's predictions (one per sample of splits.test)."""
        from dsf_dist.models.baselines import as_arrays

        return as_arrays(splits.test)[1]

    def score_file(self, cfg: DsfConfig, predictions: Path, splits: Splits) -> dict[str, Any]:
        """Metrics of a saved predictions file (rank zero; `splits` tell the class count)."""
        from dsf_dist.files import read_arrays

        arrays = read_arrays(predictions)
        return self.score(arrays["preds"], arrays["target"], cfg.metrics, self.num_classes(cfg, splits))

    def score(
        self, preds: np.ndarray, target: np.ndarray, metrics: MetricsConfig, num_classes: int | None
    ) -> dict[str, Any]:
        raise NotImplementedError

    def add_to_report(
        self,
        report: dict[str, Any],
        cfg: DsfConfig,
        test_results: dict[str, Any],
        trained: Predictions,
        existing: Predictions,
    ) -> None:
        """Fill the comparison report's task-specific parts: 'statistics' and, for classes, their tables."""
        raise NotImplementedError

    # -- export ----------------------------------------------------------------------------------------------
    def export_pretrained(self, cfg: DsfConfig, checkpoint: str, out: Path) -> Path:
        """`dsf export RUN --format hf`: the checkpoint (any strategy's format) as a folder save_pretrained wrote
        (config, model.safetensors, the tokenizer), which from_pretrained loads; returns the folder."""
        from dsf_dist.errors import ConfigError

        raise ConfigError(
            f"--format: model.task {self.name} has no Hugging Face form; export it with --format safetensors"
        )
