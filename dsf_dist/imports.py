"""Resolve 'package.module:name' import paths from the config, failing with the key that named them."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from dsf_dist.errors import ConfigError


def load_object(path: str, key: str) -> Any:
    module_name, _, attr = path.partition(":")
    search_working_folder()
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


def search_working_folder() -> None:
    """Modules in the folder a run starts from (a project's data.py and model.py, as `dsf init` writes them) import
    under the `dsf` command as they do under `python -m dsf_dist` and `python main.py`, which put that folder on
    the path. Appended, so a file there never shadows an installed package."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)
