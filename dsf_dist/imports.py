"""Resolve 'package.module:name' import paths from the config, failing with the key that named them."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
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


def unresolvable(path: str) -> str | None:
    """Why 'package.module:name' would not load here, found without running the module: None when it looks
    loadable. The module is located on the path (its parent packages are not imported where the search can do
    without), and its source is parsed for a top-level def, class, assignment or import of `name`. Only
    an import could tell more: a compiled module, a star import or a module __getattr__ is taken on trust."""
    module_name, _, attr = path.partition(":")
    spec = _find_spec(module_name)
    if spec is None:
        return f"no module '{module_name}' on this Python's path; check the spelling and PYTHONPATH"
    source = _source(spec)
    if source is None:
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return f"module '{module_name}' does not parse (line {err.lineno}: {err.msg}); fix its syntax"
    name = attr.split(".")[0]
    names = top_level_names(tree.body)
    if name in names or "*" in names or "__getattr__" in names:
        return None
    return f"module '{module_name}' defines no '{name}' at its top level; check the name after ':'"


def _find_spec(module_name: str) -> ModuleSpec | None:
    """The module's spec. Submodules are looked up in their package's folders, so a package's __init__ (which may
    import torch) does not run; a submodule that only an import makes (os.path) falls back to find_spec."""
    top, *rest = module_name.split(".")
    try:
        spec = importlib.util.find_spec(top)
        for part in rest:
            folders = spec.submodule_search_locations if spec else None
            spec = PathFinder.find_spec(part, list(folders)) if folders else None
        return spec or (importlib.util.find_spec(module_name) if rest else None)
    except (ImportError, ValueError):
        return None


def _source(spec: ModuleSpec) -> str | None:
    if not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        return Path(spec.origin).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def top_level_names(body: list[ast.stmt]) -> set[str]:
    """Names a module binds when it runs, including inside its top-level if / try / with blocks."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                names |= top_level_names(block)
    return names
