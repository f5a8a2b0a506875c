"""A stop signal that the ranks agree on at an epoch's last step (dsf_dist/hooks/preemption.py): one CPU process,
digits (20 steps an epoch), 2 epochs, the learning rate halved after each. The resumed run has the stopped
epoch's end: its validation and epoch rows in logs/metrics.csv; the schedule stepped once per epoch, not twice.

Before the stop waited for the epoch's end, the checkpoint was saved after step 20 and Lightning resumed it as an
epoch that had ended: epoch 0 was never validated and its epoch-end rows never logged. And the row of the step
the run stopped after was never logged when that was a logging step (log_every_n_steps).
"""

from __future__ import annotations

import csv

import pytest
from conftest import dsf, sets

from dsf_dist.checkpoints import load_lightning_file

pytestmark = pytest.mark.slow

ARGS = (
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "existing_model.kind=none",
    "throughput.enabled=false",
    "model.scheduler.name=step",
    "model.scheduler.step_size=1",
    "model.scheduler.gamma=0.5",
    "run.name=cut",
    "trainer.log_every_n_steps=21",  # the one training-step row is the step the run stops after (step 21)
)
SIGUSR1_AFTER_STEP_19 = "callbacks=[{target: 'interrupts:StopAt', kwargs: {step: 19, signal: SIGUSR1}}]"


def test_a_stop_at_an_epochs_last_step_keeps_that_epochs_end(tmp_path):
    cut = dsf("train", "--output", str(tmp_path), *sets(*ARGS, SIGUSR1_AFTER_STEP_19), cwd=tmp_path)
    assert cut.returncode == 75, cut.stderr[-3000:]
    run = tmp_path / "cut"
    resumed = dsf(
        "train", "-c", str(run / "config.yaml"), "--resume", "--output", str(tmp_path), *sets("callbacks=[]"),
        cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with open(run / "logs" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    validated = [(int(row["epoch"]), int(row["step"])) for row in rows if row["val_loss"]]
    assert validated == [(0, 19), (1, 39)], rows  # each epoch validated once, at its last step
    ended = [(int(row["epoch"]), int(row["step"])) for row in rows if row["train_loss_epoch"]]
    assert ended == [(0, 19), (1, 39)], rows
    stepped = [(int(row["epoch"]), int(row["step"])) for row in rows if row.get("train_loss_step")]
    assert stepped == [(1, 20)], rows  # logged by the stopped run, as a run that went on would have
    state = load_lightning_file(run / "checkpoints" / "last.ckpt")
    assert state["global_step"] == 40
    assert state["lr_schedulers"][0]["last_epoch"] == 2  # halved once after each epoch
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(3e-3 * 0.5**2)
