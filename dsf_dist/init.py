"""`dsf init DIR [--task TASK]`: a project in the seed tutorial's shape to start from, which runs as written:
main.py (the seed's four calls), data.py, model.py, config.yaml (every section, commented), README.md (how to
run it under each launcher) and slurm/train.sh.

Templates are package data under dsf_dist/templates/: common/ holds what every project gets, and one folder per
task what that task's project adds. A file in both (README.md, config.yaml) is the task's text followed by the
common text; every other file is copied as it is. common/slurm/train.sh is a symlink to the repository's
slurm/train.sh, so that one script stays the only source: an editable install reads it through the link, and
setuptools copies the target's content into a wheel. A template with a prepare.py has it run once in the new
project (the token-classification project writes its tiny corpus and models that way).

The project is written into a staging folder beside (or, for an existing empty DIR, inside) its destination and
moved into place once complete, so a refusal or a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dsf_dist.errors import DsfError

TEMPLATES = Path(__file__).with_name("templates")
COMMON = "common"
PREPARE = "prepare.py"
PREPARE_TIMEOUT_S = 600


class ProjectFolderError(DsfError):
    """DIR or --task refused before anything is written."""

    exit_code = 2


def available_tasks() -> list[str]:
    folders = [path.name for path in TEMPLATES.iterdir() if path.is_dir() and not path.name.startswith(("_", "."))]
    return sorted(name for name in folders if name != COMMON)


def default_task() -> str:
    """The embedded default config's task."""
    from dsf_dist.config.schema import ModelConfig

    return ModelConfig.model_fields["task"].default


def check_task(name: str) -> None:
    available = available_tasks()
    if name in available:
        return
    choices = f"choose one of {', '.join(available)}"
    raise ProjectFolderError(f"--task: unknown task '{name}'; {choices}")


def template_files(task: str) -> dict[Path, list[Path]]:
    """Each file of the project, by its path in the project, and the template files it is made of (task's first)."""
    parts: dict[Path, list[Path]] = {}
    for root in (TEMPLATES / task, TEMPLATES / COMMON):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                parts.setdefault(path.relative_to(root), []).append(path)
    return parts


def write_files(task: str, project: Path) -> None:
    for relative, sources in template_files(task).items():
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\n".join(source.read_bytes() for source in sources))
        executable = sources[0].stat().st_mode & 0o111
        if executable:
            target.chmod(target.stat().st_mode | executable)


def prepare(task: str, project: Path) -> None:
    """Run the project's prepare.py, if it has one, in the project (its own Python process, as the user would)."""
    if not (project / PREPARE).is_file():
        return
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no __pycache__ naming the staging folder
    command = [sys.executable, PREPARE]
    try:
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=PREPARE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DsfError(f"--task {task}: {PREPARE} ran over {PREPARE_TIMEOUT_S} s; nothing was written") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise DsfError(f"--task {task}: the project's {PREPARE} failed ({lines[-1]}); nothing was written")


def init(folder: str | Path, task: str | None = None) -> Path:
    """Write the project of `task` (default: the embedded default's) into `folder`, a new or empty folder."""
    task = task or default_task()
    check_task(task)
    folder = Path(folder).absolute()
    base = _nearest_folder(folder)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".dsf-init-", dir=base))
    except OSError as err:
        raise ProjectFolderError(
            f"{base}: cannot write the project there ({err.strerror}); choose another DIR"
        ) from None
    try:
        project = staging / folder.relative_to(base)
        try:
            project.mkdir(parents=True, exist_ok=True)
            write_files(task, project)
        except OSError as err:  # a full disk, say
            raise ProjectFolderError(
                f"{folder}: cannot write the project ({err.strerror}); nothing was written"
            ) from None
        prepare(task, project)
        _move_into_place(staging, base, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _nearest_folder(folder: Path) -> Path:
    """`folder` if it exists (and is empty), else its nearest existing ancestor, where the staging folder goes."""
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise ProjectFolderError(f"{folder}: exists and is not a folder; choose a new or empty folder")
        if any(folder.iterdir()):
            raise ProjectFolderError(f"{folder}: exists and is not empty; choose a new or empty folder")
        return folder
    base = next(parent for parent in folder.parents if parent.exists())
    if not base.is_dir():
        raise ProjectFolderError(f"{base}: is not a folder; choose a DIR under a folder")
    return base


def _move_into_place(staging: Path, base: Path, folder: Path) -> None:
    """One rename when `folder` is new (of its first missing ancestor); for an existing empty folder, one rename
    per top-level entry, undone if one fails, so that the folder itself (permissions, a shell inside it) stays."""
    if base != folder:
        first = folder.relative_to(base).parts[0]
        try:
            os.rename(staging / first, base / first)
        except OSError as err:  # made meanwhile by someone else
            raise ProjectFolderError(
                f"{base / first}: cannot write the project ({err.strerror}); choose another DIR"
            ) from None
        return
    moved: list[Path] = []
    try:
        for entry in sorted(staging.iterdir()):
            os.rename(entry, folder / entry.name)
            moved.append(folder / entry.name)
    except OSError as err:
        for path in moved:
            os.rename(path, staging / path.name)
        raise ProjectFolderError(f"{folder}: cannot write the project ({err.strerror}); choose another DIR") from None


def run(folder: str, task: str | None) -> int:
    """`dsf init`: write the project and say what to do next."""
    project = init(folder, task)
    names = sorted(f"{p.name}/" if p.is_dir() else p.name for p in project.iterdir())
    print(f"wrote {project}: {', '.join(names)}")
    print(f"next: cd {folder} && python main.py   (or: dsf run -c config.yaml; README.md shows the launchers)")
    return 0
