"""The architecture a checkpoint or an exported model folder brings with it (the existing model's kinds checkpoint,
previous and pretrained), without importing code it names: a checkpoint's hyper-parameters and an export's
config.yaml are data, and an import path in them (model.network 'pkg.mod:factory', model.module) is used only when
the user's own config, which is code they run anyway, names the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dsf_dist.checkpoints.formats import load_lightning_file
from dsf_dist.config import load_config
from dsf_dist.config.base import IMPORT_PATH
from dsf_dist.config.schema import ModelConfig
from dsf_dist.errors import ConfigError


def exported_model(folder: Path, own: ModelConfig) -> ModelConfig:
    """The model section of the config.yaml `dsf export` wrote beside model.safetensors (only that section is
    used, so the folder is not checked against this machine)."""
    section = load_config(folder / "config.yaml", check_machine=False).model
    refuse_named_code(section, own, f"existing_model.path: {folder / 'config.yaml'}")
    return section


def checkpoint_hparams(path: str | Path, own: ModelConfig) -> dict[str, Any] | None:
    """A Lightning checkpoint's hyper-parameters, to rebuild the built-in module it was saved from; None when it has
    none that describe one (then this config's model is used)."""
    hparams = load_lightning_file(path).get("hyper_parameters")
    section = hparams.get("model_config") if isinstance(hparams, dict) else None
    if not isinstance(section, dict):
        return hparams or None
    try:
        model = ModelConfig.model_validate(section)
    except ValidationError:
        return None  # not dsf's own module: the checkpoint is loaded into this config's model
    refuse_named_code(model, own, f"existing_model.path: {path}")
    return hparams


def refuse_named_code(section: ModelConfig, own: ModelConfig, where: str) -> None:
    network = section.network if IMPORT_PATH.match(section.network) else None
    for key, value, trusted in (("module", section.module, own.module), ("network", network, own.network)):
        if value and value != trusted:
            raise ConfigError(
                f"{where}: names model.{key} '{value}', code that dsf does not import from a checkpoint or model "
                f"folder (they are data); if you trust it, set model.{key}: {value} in your own config"
            )
