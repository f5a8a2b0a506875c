"""`dsf install-trainer-packages EXTRA`: pip install the optional extras of dsf-dist (the seed's command).

From a source checkout (pyproject.toml beside the package) the extras come from that checkout, installed editable
as `make setup` does; otherwise from the index, as `dsf-dist[EXTRA]`. Either way with this Python's own pip.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from dsf_dist.errors import ConfigError

EXTRAS = {
    "deepspeed": "DeepSpeed ZeRO (strategy.name: deepspeed)",
    "ray": "Ray Train and `ray job submit` (python -m dsf_dist.launchers.ray)",
    "hf": "Hugging Face transformers (model.task: token_classification)",
    "loggers": "TensorBoard and MLflow (logging.loggers)",
    "all": "all of the above, and the test tools",
}


def checkout() -> Path | None:
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    return root if pyproject.is_file() and 'name = "dsf-dist"' in pyproject.read_text() else None


def pip_command(extra: str) -> list[str]:
    if extra not in EXTRAS:
        raise ConfigError(f"install-trainer-packages: unknown extra '{extra}'; choose one of {', '.join(EXTRAS)}")
    root = checkout()
    target = ["-e", f"{root}[{extra}]"] if root else [f"dsf-dist[{extra}]"]
    return [sys.executable, "-m", "pip", "install", *target]


def install(extra: str, dry_run: bool) -> int:
    command = pip_command(extra)
    print(shlex.join(command))
    if dry_run:
        return 0
    return subprocess.run(command, check=False).returncode
