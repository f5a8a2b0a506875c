"""The run folder: `<output root>/<run name>/` with config.yaml, checkpoints/, results/, logs/.

Rank zero creates it and writes the resolved config before any worker starts training; every rank
agrees on its path because the name is fixed in the resolved config (or taken from the job id).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dsf_dist.config import DsfConfig, dump
from dsf_dist.config.base import SAFE_NAME
from dsf_dist.errors import ConfigError, RunFolderError
from dsf_dist.files import read_json, write_text
from dsf_dist.launchers.environment import Environment


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def done(self) -> Path:
        """Written by `dsf run` once the whole pipeline finished; `dsf run --resume` then does nothing."""
        return self.results / "done.json"

    def require(self) -> RunFolder:
        """For verbs that work on an existing run (test, eval, compare)."""
        if not self.config.is_file():
            raise RunFolderError(f"{self.root}: not a dsf run folder (no config.yaml); give the folder `dsf run` made")
        return self

    def prepare(self, cfg: DsfConfig, write: bool) -> str | None:
        """Before fit: create the folder (rank zero writes), or with run.resume=auto join it and return its
        last checkpoint to continue from. Every rank computes the same answer from the same files."""
        last = self.checkpoints / "last.ckpt"
        if cfg.run.resume == "auto" and self.config.is_file():
            found = resumable(last)
            if found is not None:  # vetted before anything is written: a refused checkpoint leaves the run as it was
                from dsf_dist.checkpoints import check_resumable  # torch: not for the CLI's early checks

                check_resumable(Path(found))
            if write:  # the config this run now continues under; re-run ranks read it from here
                write_text(self.config, dump(cfg))
            return found
        if write:
            # A folder without config.yaml under resume=auto: a kill came between making it and writing the config.
            self.create(cfg, exist_ok=cfg.run.resume == "auto")
        return None

    def create(self, cfg: DsfConfig, exist_ok: bool = False) -> None:
        """Rank zero only: make the folder and write the resolved config; refuse to reuse a run."""
        try:
            self.root.mkdir(parents=True, exist_ok=exist_ok)
        except FileExistsError:
            raise RunFolderError(
                f"{self.root}: run folder already exists; choose another run.name or --output, or remove it"
            ) from None
        except OSError as err:
            raise RunFolderError(
                f"{self.root}: cannot create the run folder ({err.strerror}); choose a writable --output"
            ) from None
        write_text(self.config, dump(cfg))


def set_aside(checkpoint: Path) -> Path:
    """Where a checkpoint folder waits while its replacement is renamed in (dsf_dist/hooks/preemption.py)."""
    return checkpoint.with_name(f".{checkpoint.name}.old")


def resumable(last: Path) -> str | None:
    """last.ckpt, or the one set aside if a crash came while a checkpoint folder replaced it; None if neither."""
    for path in (last, set_aside(last)):
        if path.exists():
            return str(path)
    return None


def best_checkpoint(run: RunFolder) -> str:
    record = run.results / "train.json"
    if not record.is_file():
        raise RunFolderError(f"{record}: no training record; train first (dsf train) or pass --checkpoint")
    best = read_json(record)["best_checkpoint"]
    return best if Path(best).is_absolute() else str(run.root / best)


def name_run(cfg: DsfConfig, env: Environment) -> DsfConfig:
    """Fill run.name if unset: '<data>-<job id>' under a launcher, else '<data>-<date>-<time>' (run_label)."""
    if cfg.run.name is not None:
        return cfg
    if env.job_id:
        name = f"{run_label(cfg)}-{env.job_id}"
        if not SAFE_NAME.match(name) or ".." in name:
            raise ConfigError(
                f"run.name: '{name}' (from the {env.launcher} job id) is not a safe folder name; "
                "set --set run.name=<name>"
            )
    elif env.world_size > 1:
        raise ConfigError(
            f"run.name: unset, and {env.launcher} gives no job id that all ranks share; "
            "set --set run.name=<name> (or torchrun --rdzv-id)"
        )
    else:
        name = unused_name(Path(cfg.run.output_root), dated_name(cfg))
    resolved = cfg.model_copy(deep=True)
    resolved.run.name = name
    return resolved


def run_label(cfg: DsfConfig) -> str:
    """What the default run name starts with: the data the run learns from, by the name its config gives it (a
    data module's class, else the data set's function or built-in name), never a built-in name it does not use."""
    source = cfg.data.datamodule or cfg.data.dataset
    return source.rpartition(":")[2].rpartition(".")[2] or "run"


def dated_name(cfg: DsfConfig) -> str:
    return f"{run_label(cfg)}-{time.strftime('%Y%m%d-%H%M%S')}"


def unused_name(root: Path, base: str) -> str:
    name, counter = base, 1
    while (root / name).exists():
        counter += 1
        name = f"{base}-{counter}"
    return name
