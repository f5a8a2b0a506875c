"""Hugging Face model folders for sequence classification, read as data before anything loads (torch- and
transformers-free: config.json is JSON): safetensors weights only (checkpoints/hf.py), no folder code unless
model.trust_remote_code, and the head's label names against the data's.

A head decision, from config.json alone: a folder without a sequence-classification head, or whose head has only
transformers' default names (LABEL_0, LABEL_1, ...), gets a new head for the data's labels; a head fine-tuned on
the same label names (any order) is kept, its output columns mapped to the data's label ids by name; one with other
names is refused unless model.new_head is set, since training would throw that head away.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dsf_dist.checkpoints.hf import check_hf_folder
from dsf_dist.errors import ConfigError

DEFAULT_NAME = re.compile(r"LABEL_\d+")


def folder_config(folder: str, key: str, trust_remote_code: bool) -> dict:
    """config.json of a local model folder, after the safetensors and remote-code checks."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{key}: {folder} has no config.json; give a folder that save_pretrained wrote")
    check_hf_folder(folder, key)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: {path / 'config.json'} is not readable JSON ({err}); fix or replace it") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{key}: {path / 'config.json'} is not a JSON object; fix or replace it")
    if config.get("auto_map") and not trust_remote_code:
        raise ConfigError(
            f"{key}: {folder} needs its own Python code to load (config.json auto_map), and dsf runs a model "
            "folder's code only with model.trust_remote_code: true; set it only for code you have read and trust"
        )
    return config


def head_names(config: dict) -> list[str] | None:
    """The label names of the folder's sequence-classification head, in its column order; None: no head, or only
    transformers' default names."""
    architectures = config.get("architectures") or []
    if not any(str(name).endswith("ForSequenceClassification") for name in architectures):
        return None
    id2label = config.get("id2label") or {}
    names = [str(id2label[key]) for key in sorted(id2label, key=int)]
    return None if all(DEFAULT_NAME.fullmatch(name) for name in names) else names


def columns_for(theirs: list[str], labels: list[str]) -> list[int]:
    return [theirs.index(name) for name in labels]


def trained_columns(folder: str, labels: list[str], new_head: bool, trust_remote_code: bool) -> list[int] | None:
    """model.pretrained: the kept head's column of each data label, or None for a new head."""
    theirs = head_names(folder_config(folder, "model.pretrained", trust_remote_code))
    if theirs is None or new_head:
        return None
    if sorted(theirs) != sorted(labels):
        raise ConfigError(
            f"model.pretrained: {folder} has a head fine-tuned on labels {theirs}, the data has {labels}; set "
            "model.new_head: true to train a new head for the data's labels (the folder's head is then discarded)"
        )
    return columns_for(theirs, labels)


def existing_columns(folder: str, labels: list[str], trust_remote_code: bool) -> list[int]:
    """existing_model.path: a fine-tuned folder with the data's label names (any order); its column of each."""
    theirs = head_names(folder_config(folder, "existing_model.path", trust_remote_code))
    if theirs is None or sorted(theirs) != sorted(labels):
        found = "no fine-tuned head (no id2label names)" if theirs is None else f"a head for labels {theirs}"
        raise ConfigError(
            f"existing_model.path: {folder} has {found}, the data has labels {labels}; give a model fine-tuned on "
            "the same label names (e.g. a run's `dsf export --format hf` folder)"
        )
    return columns_for(theirs, labels)
