"""Hugging Face token classification: AutoModelForTokenClassification tags each word with a BIO tag.

Config: model.task token_classification, model.pretrained (name or folder: model and tokenizer), data.path (JSONL
or parquet sentences, read through datasets; data.test_path optional), data.dataset_kwargs.max_length (sub-tokens
per sentence, default 128).
A sample of the comparison is a word: test predictions are saved per sentence and rewritten one row per word
(with its sentence) before scoring; entity F1 is scored and resampled by whole sentences (entities.py).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsf_dist.config.schema import ComparisonConfig, DsfConfig, ModelConfig
from dsf_dist.errors import ConfigError
from dsf_dist.tasks.classification import ClassificationTask
from dsf_dist.tasks.token_classification.sentences import label_names, read_sentences

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from torch import nn

    from dsf_dist.data import Splits
    from dsf_dist.scoring.predictions import Predictions

DEFAULT_MAX_LENGTH = 128


@cache
def _corpus(path: str | None, key: str, cache_folder: str, cwd: str) -> tuple[dict[str, list[str]], ...]:
    """Read once per process; `cwd` is part of the key because a relative path names another file after a chdir."""
    return tuple(read_sentences(path, key, Path(cache_folder))) if path else ()


def corpora(cfg: DsfConfig) -> tuple[list[dict[str, list[str]]], list[dict[str, list[str]]]]:
    """data.path's and data.test_path's sentences, read through datasets with its cache where every text task
    keeps it (data/text.py's cache_dir)."""
    from dsf_dist.data.text import cache_dir

    if not cfg.data.path:
        raise ConfigError(
            "data.path: token_classification reads its sentences from a JSONL or parquet file; set data.path"
        )
    where = (str(cache_dir(cfg)), os.getcwd())
    train, test = _corpus(cfg.data.path, "data.path", *where), _corpus(cfg.data.test_path, "data.test_path", *where)
    return list(train), list(test)


def labels(cfg: DsfConfig) -> list[str]:
    """The tag set of all the data (training and test files), in a fixed order."""
    return label_names(*corpora(cfg))


def check_existing(cfg: DsfConfig) -> None:
    """Before training: a pretrained existing model must be a Hugging Face folder with the data's tag set."""
    from dsf_dist.tasks.token_classification.model import columns_of, existing_labels

    path = cfg.existing_model.path
    if cfg.existing_model.kind != "pretrained":
        return
    if not (Path(path) / "config.json").is_file():
        raise ConfigError(
            f"existing_model.path: {path} has no config.json; give a folder save_pretrained wrote "
            "(or kind: checkpoint for a dsf checkpoint)"
        )
    # The folder's own refusals (pickled weights, code it would run) before the data is read, since reading
    # writes datasets' cache: a refused `dsf eval` then leaves the disk as it found it.
    theirs = existing_labels(path, cfg.model.trust_remote_code)
    columns_of(theirs, labels(cfg), path)


class TokenClassificationTask(ClassificationTask):
    name = "token_classification"
    metrics = (*ClassificationTask.metrics, "entity_f1")

    def check_config(self, cfg: DsfConfig) -> None:
        if not cfg.model.pretrained:
            raise ConfigError(
                "model.pretrained: model.task is token_classification but model.pretrained is empty; "
                "set a model folder (or a Hugging Face model name)"
            )
        if cfg.existing_model.kind == "callable":
            raise ConfigError(
                "existing_model.kind: callable does not apply to token_classification; "
                "set kind to pretrained (a model folder), checkpoint, previous or none"
            )

    def check_data(self, cfg: DsfConfig) -> None:
        if not cfg.data.datamodule:
            corpora(cfg)  # read once per process (_corpus is cached): splits() reuses it

    def check_before_fit(self, cfg: DsfConfig) -> None:
        check_existing(cfg)

    def splits(self, cfg: DsfConfig) -> Splits:
        from dsf_dist.data import split_dataset
        from dsf_dist.tasks.token_classification.data import encode
        from dsf_dist.tasks.token_classification.model import load_tokenizer

        sentences, test_sentences = corpora(cfg)
        tokenizer = load_tokenizer(cfg.model.pretrained, cfg.model.trust_remote_code)
        max_length = int(cfg.data.dataset_kwargs.get("max_length", DEFAULT_MAX_LENGTH))
        names = labels(cfg)
        max_words = max(len(s["tokens"]) for s in [*sentences, *test_sentences])
        dataset = encode(sentences, tokenizer, names, max_words, max_length)
        test_set = encode(test_sentences, tokenizer, names, max_words, max_length) if test_sentences else None
        return split_dataset(dataset, cfg.data.split, cfg.run.seed, test_set)

    def collate(self, cfg: DsfConfig) -> Any:
        from dsf_dist.tasks.token_classification.data import Collate
        from dsf_dist.tasks.token_classification.model import load_tokenizer

        tokenizer = load_tokenizer(cfg.model.pretrained, cfg.model.trust_remote_code)
        return Collate(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    def module(self, cfg: DsfConfig, model: ModelConfig, splits: Splits) -> pl.LightningModule:
        from dsf_dist.tasks.token_classification.model import TokenClassifier

        model_config = model.model_dump(mode="json")
        return TokenClassifier(model_config["pretrained"], labels(cfg), model_config)

    def module_from_hparams(self, hparams: dict[str, Any]) -> pl.LightningModule | None:
        return None  # a token checkpoint is loaded into this config's model

    def pretrained_module(self, cfg: DsfConfig) -> pl.LightningModule:
        """existing_model.kind pretrained: a fine-tuned Hugging Face folder (config.json), scored as it is."""
        from dsf_dist.tasks.token_classification.model import TokenClassifier

        check_existing(cfg)
        model_config = cfg.model.model_dump(mode="json")
        return TokenClassifier(cfg.existing_model.path, labels(cfg), model_config, existing=True)

    def wrap_units(self, model: nn.Module) -> list[str]:
        from dsf_dist.models.units import transformer_blocks

        return transformer_blocks(model)

    def num_classes(self, cfg: DsfConfig, splits: Splits) -> int:
        return len(labels(cfg))

    def score_file(self, cfg: DsfConfig, predictions: Path, splits: Splits) -> dict[str, Any]:
        from dsf_dist.files import read_arrays
        from dsf_dist.tasks.token_classification.entities import entity_scores, to_words

        to_words(predictions)
        results = {**super().score_file(cfg, predictions, splits), "labels": labels(cfg)}
        if cfg.metrics.entity_f1:
            results.update(entity_scores(read_arrays(predictions), results["labels"]))
        return results

    def comparison_names(self, cfg: DsfConfig, test_results: dict[str, Any]) -> ComparisonConfig:
        found = test_results.get("labels")
        if cfg.comparison.class_names or not found:
            return cfg.comparison
        return cfg.comparison.model_copy(update={"class_names": found})

    def add_to_report(
        self,
        report: dict[str, Any],
        cfg: DsfConfig,
        test_results: dict[str, Any],
        trained: Predictions,
        existing: Predictions,
    ) -> None:
        from dsf_dist.tasks.token_classification.entities import token_report

        super().add_to_report(report, cfg, test_results, trained, existing)
        if test_results.get("labels"):
            token_report(report, trained, existing, test_results["labels"], cfg.comparison)

    def export_pretrained(self, cfg: DsfConfig, checkpoint: str, out: Path) -> Path:
        """`dsf export RUN --format hf`: AutoModelForTokenClassification's folder, with id2label / label2id of the
        data's tags and model.pretrained's tokenizer."""
        from dsf_dist.checkpoints.pretrained import export_pretrained_folder
        from dsf_dist.tasks.token_classification.model import load_tokenizer

        module = self.module(cfg, cfg.model, None)  # type: ignore[arg-type]  # the module needs no splits
        tokenizer = load_tokenizer(cfg.model.pretrained, cfg.model.trust_remote_code)
        return export_pretrained_folder(module, checkpoint, tokenizer, out)
