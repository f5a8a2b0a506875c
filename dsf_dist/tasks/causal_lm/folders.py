"""Local Hugging Face folders, checked before anything loads them (torch-free, so `dsf config --check` and a
config's first load refuse them): weights as safetensors only, never pickles; no model code from the folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsf_dist.errors import ConfigError

PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
CONTEXT_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "seq_length")


def check_model_folder(path: str, key: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """A folder save_pretrained wrote, with safetensors weights and no remote code (unless model.trust_remote_code);
    returns its config.json."""
    folder = _folder(path, key, "model")
    config = _json(folder / "config.json", key, "config.json")
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(found.name for pattern in PICKLED_WEIGHTS for found in folder.glob(pattern))
        if pickles:
            raise ConfigError(
                f"{key}: {path} holds its weights as pickles ({pickles[0]}), and unpickling can run code; dsf loads "
                "safetensors only: re-save it with save_pretrained(..., safe_serialization=True) from code you trust"
            )
        raise ConfigError(f"{key}: {path} has no *.safetensors weights; give a folder save_pretrained wrote")
    if not trust_remote_code:
        _no_remote_code(config, path, key, "config.json")
    return config


def check_tokenizer_folder(path: str, key: str, trust_remote_code: bool = False) -> None:
    folder = _folder(path, key, "tokenizer")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        raise ConfigError(
            f"{key}: {path} has no tokenizer (tokenizer.json or tokenizer_config.json); "
            "save one there with tokenizer.save_pretrained, or set model.tokenizer"
        )
    if (folder / "tokenizer_config.json").is_file() and not trust_remote_code:
        _no_remote_code(_json(folder / "tokenizer_config.json", key, "tokenizer_config.json"), path, key, "tokenizer")


def context_length(config: dict[str, Any]) -> int | None:
    """The longest sequence the model's position embeddings allow, by the names Hugging Face configs use."""
    for name in CONTEXT_KEYS:
        if isinstance(config.get(name), int):
            return config[name]
    return None


def _folder(path: str, key: str, what: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(
            f"{key}: {path} is not a folder; give a local {what} folder that save_pretrained wrote (dsf downloads "
            "nothing)"
        )
    return folder


def _json(path: Path, key: str, name: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{key}: {path.parent} has no {name}; give a folder save_pretrained wrote")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{key}: {path} is not valid JSON ({err}); re-save the folder with save_pretrained") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: {path} is not a JSON object; re-save the folder with save_pretrained")
    return data


def _no_remote_code(config: dict[str, Any], path: str, key: str, what: str) -> None:
    if "auto_map" in config:
        raise ConfigError(
            f"{key}: {path} needs Python code from the folder to load its {what} (auto_map), and dsf runs no code "
            "from a model folder unless model.trust_remote_code is true; use a model type transformers implements, or "
            "set model.trust_remote_code only for code you have read and trust"
        )
