"""The built-in Hugging Face token-classification task, as the pipeline's split / data module / model steps see it.

Config: model.task token_classification, model.pretrained (name or folder: model and tokenizer), data.path (JSONL
sentences; data.test_path optional), data.dataset_kwargs.max_length (sub-tokens per sentence, default 128).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from dsf_dist.config.schema import DsfConfig
from dsf_dist.data import Splits, split_dataset
from dsf_dist.data.tokens import Collate, encode, label_names, read_sentences
from dsf_dist.errors import ConfigError

DEFAULT_MAX_LENGTH = 128


@cache
def _corpus(path: str | None, key: str) -> tuple[dict[str, list[str]], ...]:
    return tuple(read_sentences(path, key)) if path else ()


def corpora(cfg: DsfConfig) -> tuple[list[dict[str, list[str]]], list[dict[str, list[str]]]]:
    if not cfg.data.path:
        raise ConfigError("data.path: token_classification reads its sentences from a JSONL file; set data.path")
    return list(_corpus(cfg.data.path, "data.path")), list(_corpus(cfg.data.test_path, "data.test_path"))


def labels(cfg: DsfConfig) -> list[str]:
    """The tag set of all the data (training and test files), in a fixed order."""
    return label_names(*corpora(cfg))


def splits(cfg: DsfConfig) -> Splits:
    from dsf_dist.models.hf import load_tokenizer

    sentences, test_sentences = corpora(cfg)
    tokenizer = load_tokenizer(cfg.model.pretrained)
    max_length = int(cfg.data.dataset_kwargs.get("max_length", DEFAULT_MAX_LENGTH))
    names = labels(cfg)
    max_words = max(len(s["tokens"]) for s in [*sentences, *test_sentences])
    dataset = encode(sentences, tokenizer, names, max_words, max_length)
    test_set = encode(test_sentences, tokenizer, names, max_words, max_length) if test_sentences else None
    return split_dataset(dataset, cfg.data.split, cfg.run.seed, test_set)


def collate(cfg: DsfConfig) -> Collate:
    from dsf_dist.models.hf import load_tokenizer

    tokenizer = load_tokenizer(cfg.model.pretrained)
    return Collate(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def module(cfg: DsfConfig, model_config: dict[str, Any] | None = None) -> Any:
    from dsf_dist.models.hf import TokenClassifier

    model_config = model_config or cfg.model.model_dump(mode="json")
    return TokenClassifier(model_config["pretrained"], labels(cfg), model_config)


def check_existing(cfg: DsfConfig) -> None:
    """Before training: a pretrained existing model must be a Hugging Face folder with the data's tag set."""
    from dsf_dist.models.hf import output_columns

    path = cfg.existing_model.path
    if cfg.existing_model.kind != "pretrained":
        return
    if not (Path(path) / "config.json").is_file():
        raise ConfigError(
            f"existing_model.path: {path} has no config.json; give a folder save_pretrained wrote "
            "(or kind: checkpoint for a dsf checkpoint)"
        )
    output_columns(path, labels(cfg))


def existing_module(cfg: DsfConfig) -> Any:
    """existing_model.kind pretrained: a fine-tuned Hugging Face folder (config.json), scored as it is."""
    from dsf_dist.models.hf import TokenClassifier

    check_existing(cfg)
    return TokenClassifier(cfg.existing_model.path, labels(cfg), cfg.model.model_dump(mode="json"), existing=True)
