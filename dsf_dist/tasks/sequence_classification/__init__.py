"""Hugging Face sequence classification: AutoModelForSequenceClassification labels each text (or text pair).

Config: model.task sequence_classification; model.pretrained (a local folder, safetensors weights) or
model.architecture (a new model, its WordPiece tokenizer trained on the training split, kept in <run>/tokenizer/);
model.new_head; data.path (JSONL, CSV or parquet; or data.dataset pydoc_topics), data.test_path, data.text_field,
data.text_pair_field, data.label_field, data.dataset_kwargs.max_length (tokens per text, default 128). Labels come
from the training data (examples.py); scoring and the report are classification's (per-class table, confusion
matrices, bootstrap, McNemar, gates), with the label names as class names. The existing model is another
fine-tuned folder with the same label names, a dsf checkpoint, or the TF-IDF baseline (baseline.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsf_dist.config.schema import ComparisonConfig, DsfConfig, ModelConfig
from dsf_dist.errors import ConfigError
from dsf_dist.tasks.classification import ClassificationTask
from dsf_dist.tasks.sequence_classification import examples, folders

if TYPE_CHECKING:
    import numpy as np
    import pytorch_lightning as pl
    from torch import nn

    from dsf_dist.data import Splits

DEFAULT_MAX_LENGTH = 128
RUN_TOKENIZER = "tokenizer"  # <run>/tokenizer/: the tokenizer a model.architecture run trained, with the run
TFIDF = "dsf_dist.tasks.sequence_classification.baseline:tfidf_logistic_regression"
DIGITS_BASELINE = "dsf_dist.models.baselines:logistic_regression"


class SequenceClassificationTask(ClassificationTask):
    name = "sequence_classification"

    def __init__(self) -> None:
        self._parts: tuple[examples.Examples, examples.Examples, examples.Examples] | None = None
        self._tokenizer: Any = None
        self._trained_tokenizer = False

    # -- before anything runs (torch-free) -------------------------------------------------------------------
    def check_config(self, cfg: DsfConfig) -> None:
        model, existing = cfg.model, cfg.existing_model
        if bool(model.pretrained) == bool(model.architecture):
            raise ConfigError(
                "model.pretrained: sequence_classification fine-tunes model.pretrained (a local folder) or trains a "
                "new model from model.architecture; set exactly one of them"
            )
        if model.architecture is not None and not isinstance(model.architecture.get("model_type"), str):
            raise ConfigError("model.architecture: name the model type, e.g. {model_type: bert, hidden_size: 64, ...}")
        if model.pretrained:
            folders.folder_config(model.pretrained, "model.pretrained", model.trust_remote_code)
        if existing.kind == "callable" and existing.target == DIGITS_BASELINE:
            raise ConfigError(
                f"existing_model.target: {DIGITS_BASELINE} reads numeric features, not text; for "
                f"sequence_classification use {TFIDF} (fit on the training split), or kind pretrained with a folder"
            )
        if existing.kind == "pretrained":
            folders.folder_config(existing.path, "existing_model.path", model.trust_remote_code)

    def check_data(self, cfg: DsfConfig) -> None:
        if cfg.data.datamodule:  # the user's data module reads the data
            return
        names = self.labels(cfg)  # data.path and data.test_path: columns, rows, the test labels
        model = cfg.model
        if model.pretrained and not model.module:
            self.tokenizer(cfg)  # kept for the run: it must fit the model's embeddings
            folders.trained_columns(model.pretrained, names, model.new_head, model.trust_remote_code)
        self.check_before_fit(cfg)

    def check_before_fit(self, cfg: DsfConfig) -> None:
        if cfg.existing_model.kind == "pretrained":
            folders.existing_columns(cfg.existing_model.path, self.labels(cfg), cfg.model.trust_remote_code)

    def prepare_run(self, cfg: DsfConfig) -> None:
        """Keep a tokenizer this run trained in <run>/tokenizer/: other ranks, `dsf test` and the export read it."""
        if self._trained_tokenizer and self.run_root is not None:
            from dsf_dist.checkpoints.pretrained import save_folder

            save_folder(self.run_root / RUN_TOKENIZER, self._tokenizer.save_pretrained)

    # -- data ------------------------------------------------------------------------------------------------
    def parts(self, cfg: DsfConfig) -> tuple[examples.Examples, examples.Examples, examples.Examples]:
        """Train, val and test examples: data.path split stratified by label (train and val only, when
        data.test_path gives the test set), every test label checked against the training labels."""
        if self._parts is None:
            found, test = examples.examples(cfg), examples.examples(cfg, test=True)
            split = cfg.data.split
            fractions = (split.train, split.val, split.test)
            if test is not None:
                share = split.val / (split.train + split.val)
                fractions = (1 - share, share, 0.0)
            train, val, held_out = (
                found.subset(rows) for rows in examples.stratified_rows(found.labels, fractions, cfg.run.seed)
            )
            names = examples.label_names(train.labels)
            if len(names) < 2:
                raise ConfigError(f"data.path: {cfg.data.path} has one label ({names[0]}); give at least two")
            if test is not None:
                examples.check_test_labels(names, test, str(cfg.data.test_path))
            self._parts = (train, val, test if test is not None else held_out)
        return self._parts

    def labels(self, cfg: DsfConfig) -> list[str]:
        """The training split's label names in sorted order: label id i is labels[i]."""
        return examples.label_names(self.parts(cfg)[0].labels)

    def splits(self, cfg: DsfConfig) -> Splits:
        from dsf_dist.data import Splits
        from dsf_dist.tasks.sequence_classification.data import encode

        names = self.labels(cfg)  # the data first: its refusals need no transformers
        tokenizer = self.tokenizer(cfg)
        max_length = int(cfg.data.dataset_kwargs.get("max_length", DEFAULT_MAX_LENGTH))
        return Splits(*(encode(part, tokenizer, names, max_length) for part in self.parts(cfg)))

    def tokenizer(self, cfg: DsfConfig) -> Any:
        """model.pretrained's, else the one this run trained (<run>/tokenizer/), else a WordPiece trained now on
        the training split's texts."""
        if self._tokenizer is None:
            from dsf_dist.tasks.sequence_classification import hf

            model, kept = cfg.model, self.run_root / RUN_TOKENIZER if self.run_root else None
            if model.pretrained:
                self._tokenizer = hf.load_tokenizer(model.pretrained, "model.pretrained", model.trust_remote_code)
                vocab = folders.folder_config(model.pretrained, "model.pretrained", model.trust_remote_code)
                hf.check_tokenizer_fits(self._tokenizer, vocab.get("vocab_size"), "model.pretrained", model.pretrained)
            elif kept is not None and kept.is_dir():
                self._tokenizer = hf.load_tokenizer(kept, str(kept))
            else:
                train = self.parts(cfg)[0]
                size = int((model.architecture or {}).get("vocab_size", hf.DEFAULT_VOCAB_SIZE))
                self._tokenizer = hf.train_tokenizer(train.texts + (train.pairs or []), size)
                self._trained_tokenizer = True
        return self._tokenizer

    def collate(self, cfg: DsfConfig) -> Any:
        from dsf_dist.tasks.sequence_classification.data import Collate

        tokenizer = self.tokenizer(cfg)
        return Collate(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    # -- the model -------------------------------------------------------------------------------------------
    def module(self, cfg: DsfConfig, model: ModelConfig, splits: Splits) -> pl.LightningModule:
        from dsf_dist.tasks.sequence_classification.model import SequenceClassifier

        names = self.labels(cfg)
        if model.pretrained:
            columns = folders.trained_columns(model.pretrained, names, model.new_head, model.trust_remote_code)
            source: dict[str, Any] = {"pretrained": model.pretrained, "columns": columns}
        else:
            tokenizer = self.tokenizer(cfg)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            source = {"architecture": dict(model.architecture), "vocab_size": len(tokenizer), "pad_token_id": pad}
        return SequenceClassifier(model.model_dump(mode="json"), names, source)

    def module_from_hparams(self, hparams: dict[str, Any]) -> pl.LightningModule | None:
        return None  # a checkpoint is loaded into this config's model

    def pretrained_module(self, cfg: DsfConfig) -> pl.LightningModule:
        """existing_model.kind pretrained: a fine-tuned folder, scored as it is, with its own tokenizer."""
        from dsf_dist.tasks.sequence_classification.model import SequenceClassifier

        path, names = cfg.existing_model.path, self.labels(cfg)
        columns = folders.existing_columns(path, names, cfg.model.trust_remote_code)
        max_length = int(cfg.data.dataset_kwargs.get("max_length", DEFAULT_MAX_LENGTH))
        source = {"pretrained": path, "columns": columns, "existing": True, "max_length": max_length}
        return SequenceClassifier(cfg.model.model_dump(mode="json"), names, source)

    def wrap_units(self, model: nn.Module) -> list[str]:
        from dsf_dist.models.units import transformer_blocks

        return transformer_blocks(model)

    # -- scoring ---------------------------------------------------------------------------------------------
    def num_classes(self, cfg: DsfConfig, splits: Splits) -> int:
        return len(self.labels(cfg))

    def test_targets(self, splits: Splits) -> np.ndarray:
        import numpy as np

        return np.asarray(splits.test.labels, dtype=np.int64)

    def score_file(self, cfg: DsfConfig, predictions: Path, splits: Splits) -> dict[str, Any]:
        return {**super().score_file(cfg, predictions, splits), "labels": self.labels(cfg)}

    def comparison_names(self, cfg: DsfConfig, test_results: dict[str, Any]) -> ComparisonConfig:
        found = test_results.get("labels")
        if cfg.comparison.class_names or not found:
            return cfg.comparison
        return cfg.comparison.model_copy(update={"class_names": found})

    # -- export ----------------------------------------------------------------------------------------------
    def export_pretrained(self, cfg: DsfConfig, checkpoint: str, out: Path) -> Path:
        from dsf_dist.checkpoints.pretrained import export_pretrained_folder

        module = self.module(cfg, cfg.model, None)  # type: ignore[arg-type]  # the module needs no splits
        return export_pretrained_folder(module, checkpoint, self.tokenizer(cfg), out)
