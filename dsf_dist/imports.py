"""Resolve 'package.module:name' import paths from the config, failing with the key that named them."""

from __future__ import annotations

import importlib
from typing import Any

from dsf_dist.errors import ConfigError


def load_object(path: str, key: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{key}: cannot import module '{module_name}' ({err}); check the path and PYTHONPATH"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}: module '{module_name}' has no attribute '{attr}'; check the name after ':'")
        obj = getattr(obj, part)
    return obj
