"""A test's own Lightning callback that holds one rank of a real run at a chosen point, so that a kill or a signal
lands exactly there instead of wherever a timer happened to be (an event the test waits on, not a clock).

Listed in a run's config as `callbacks: [{target: hold_points:HoldAt}]` (tests/ is on the workers' path); it acts
only when the environment variable DSF_TEST_HOLD holds a JSON object, so the same config runs undisturbed when it
is unset (a resume, a reference run):

    {"point": "train_step" | "checkpoint" | "test", "rank": 0, "step": 3, "replacing": false,
     "marker": "/abs/held.json", "release": "/abs/release"}

- train_step: inside the training step after `step` optimizer steps, between forward and backward (the other
  ranks wait in the gradient all-reduce);
- checkpoint: inside a save of last.ckpt (with `replacing`, only one that replaces an existing last.ckpt), once
  the rank's part of the staging copy is written and before it is published (the other ranks wait in the
  save's barrier);
- test: in the test phase that follows fit, before test batch `step` (dsf tests on a trainer of its own, without
  the run's callbacks, so at fit's end the hold goes into the module class's test_step, in this process only).

At the point the rank writes `marker` (JSON: point, rank, global_step, pid, the time, for a checkpoint the staging
path; written whole by a rename, so a test never reads half of it) and waits until the file `release` exists, at
most HOLD_S. A marker that already exists means this point was held once (by an earlier attempt of the same
job, e.g. before a SLURM requeue): it is passed without holding. Nothing is added to the checkpoints, the model or
the random streams, so a held run trains exactly like one without the callback.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

HOLD_S = 300.0
ENV = "DSF_TEST_HOLD"


def hold_env(
    point: str, marker: Path, rank: int = 0, step: int = 0, replacing: bool = False, release: Path | None = None
) -> dict[str, str]:
    """The environment entry that arms the hold of a run started with it."""
    where = {"point": point, "rank": rank, "step": step, "replacing": replacing}
    return {ENV: json.dumps({**where, "marker": str(marker), "release": str(release or "")})}


def read_marker(marker: Path) -> dict[str, Any] | None:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


class HoldAt(Callback):
    def __init__(self) -> None:
        self.where = json.loads(os.environ[ENV]) if os.environ.get(ENV) else None

    def _armed(self, trainer: pl.Trainer, point: str) -> bool:
        where = self.where
        return (
            where is not None
            and where["point"] == point
            and trainer.global_rank == where["rank"]
            and not Path(where["marker"]).exists()
        )

    def _hold(self, trainer: pl.Trainer, **details: Any) -> None:
        marker = Path(self.where["marker"])
        record = {"point": self.where["point"], "rank": trainer.global_rank, "pid": os.getpid()}
        record |= {"global_step": trainer.global_step, "epoch": trainer.current_epoch, "at": time.time(), **details}
        partial = marker.with_name(f".{marker.name}.tmp")
        partial.write_text(json.dumps(record))
        os.replace(partial, marker)
        release = Path(self.where["release"]) if self.where["release"] else None
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline and not (release is not None and release.exists()):
            time.sleep(0.05)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Any) -> None:
        if self._armed(trainer, "train_step") and trainer.global_step >= self.where["step"]:
            self._hold(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._armed(trainer, "test"):
            return
        module_class, test_step, hold = type(pl_module), type(pl_module).test_step, self

        def held_test_step(module: pl.LightningModule, batch: Any, batch_idx: int, *args: Any, **kwargs: Any) -> Any:
            if batch_idx >= hold.where["step"] and not Path(hold.where["marker"]).exists():
                hold._hold(module.trainer, batch=batch_idx)
            return test_step(module, batch, batch_idx, *args, **kwargs)

        module_class.test_step = held_test_step

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.where is None or self.where["point"] != "checkpoint":
            return
        save = trainer.strategy.save_checkpoint

        def save_then_hold(checkpoint: dict, filepath: Any, *args: Any, **kwargs: Any) -> None:
            save(checkpoint, filepath, *args, **kwargs)
            staging = Path(filepath)
            replacing = (staging.parent / "last.ckpt").exists() or not self.where["replacing"]
            if staging.name == ".last.ckpt.partial" and replacing and self._armed(trainer, "checkpoint"):
                self._hold(trainer, staging=str(staging))

        trainer.strategy.save_checkpoint = save_then_hold
