"""A Hugging Face model folder is data: dsf loads its weights from safetensors only (from_pretrained with
use_safetensors=True), never from `pytorch_model.bin`, which torch unpickles, and runs none of the folder's own code
unless the config says model.trust_remote_code (checked where transformers is called). Torch- and transformers-free:
these checks run before a model is built."""

from __future__ import annotations

import json
from pathlib import Path

from dsf_dist.errors import ConfigError

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def check_hf_folder(pretrained: str, key: str) -> None:
    """A local folder must hold safetensors weights; one with only pytorch_model.bin is refused with how to convert
    it. A Hub name is left to transformers, whose use_safetensors=True refuses a repository without safetensors."""
    folder = Path(pretrained)
    if not folder.is_dir():
        return
    if not any((folder / name).is_file() for name in SAFE_WEIGHTS):
        pickled = next((name for name in PICKLED_WEIGHTS if (folder / name).is_file()), None)
        if pickled is not None:
            raise ConfigError(
                f"{key}: {folder} holds its weights only in {pickled}, a pickle that could run code, and dsf loads "
                "Hugging Face weights from safetensors only; convert it once where you trust the file: python -c "
                f"\"from transformers import AutoModel; AutoModel.from_pretrained('{folder}', use_safetensors=False)"
                f".save_pretrained('{folder}')\" (writes model.safetensors; use the model's own Auto class for a head)"
            )
    named = _config(folder).get("transformers_weights")  # a config.json may name its weights file
    if named is not None and not str(named).endswith((".safetensors", ".safetensors.index.json")):
        raise ConfigError(
            f"{key}: {folder / 'config.json'} names {named!r} as its weights, not a safetensors file, and dsf loads "
            "Hugging Face weights from safetensors only; remove transformers_weights or point it at model.safetensors"
        )


def _config(folder: Path) -> dict:
    try:
        found = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}  # missing or broken: transformers' own error names it
    return found if isinstance(found, dict) else {}
