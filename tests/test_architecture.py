"""The house's shape, kept: every module sits in a layer of the import-linter contract (so the contract cannot
pass by naming nothing), no module outside dsf_dist/tasks/ asks which task it runs, and the task registry and
the config schema name the same tasks. `lint-imports` runs here too, so `make test` and CI check the contracts."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "dsf_dist"


def modules() -> list[str]:
    names = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def contract(kind: str) -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(item for item in config["contracts"] if item["type"] == kind)


def test_every_module_is_in_a_layer():
    layers = [name.strip() for layer in contract("layers")["layers"] for name in layer.split("|")]
    # Package roots that only hold a docstring, or re-export one of their own modules, need no layer.
    roots = {"dsf_dist", "dsf_dist.launchers"}
    unplaced = [
        module
        for module in modules()
        if module not in roots and not any(module == layer or module.startswith(layer + ".") for layer in layers)
    ]
    assert unplaced == []
    assert len(layers) >= 20  # the contract names the house, not a handful of modules


def test_the_import_contracts_hold():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-logo", "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.count("KEPT") == 3


TASK_BRANCH = re.compile(r"""task\s*(==|!=|in\b)|["'](classification|regression|token_classification)["']""")


def test_no_module_outside_tasks_branches_on_the_task():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("tasks/") or relative == "config/schema.py":  # the schema defines the names
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if TASK_BRANCH.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


def test_the_registry_and_the_schema_name_the_same_tasks():
    from dsf_dist.config.schema import ModelConfig
    from dsf_dist.tasks import TASKS, get_task

    assert set(typing.get_args(ModelConfig.model_fields["task"].annotation)) == set(TASKS)
    assert all(get_task(name).name == name for name in TASKS)
