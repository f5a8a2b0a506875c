"""checkpoint.async_save on 2 CPU ranks, for both kinds of background write: DDP's single-file checkpoints (a
background torch.save) and FSDP's sharded ones (torch.distributed.checkpoint.async_save). A SIGKILL of every rank
while a write replaces last.ckpt leaves the previous last.ckpt whole, the resume continues from it, and the run ends
bit-identical to an uninterrupted asynchronous run. A checkpoint every step of a 13 MB model keeps a write in flight
most of the time, so every save also waits for the one before it. (How long the loop is blocked, sync against
async, is measured by benchmarks/checkpoint_stall.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import dsf, results, sets
from ranks import kill_group, start, wait_for

from dsf_dist.checkpoints import check_resumable, load_lightning_file, load_weights

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

ASYNC = (
    "trainer.devices=2",
    "trainer.max_epochs=1",  # 10 steps, each with a save: enough for a kill mid-write and a resume after it
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "existing_model.kind=none",
    "throughput.enabled=false",
    "model.network_kwargs.hidden_sizes=[1024,1024]",  # 13 MB with Adam's moments: a write lasts long enough
    "checkpoint.every_n_train_steps=1",
    "checkpoint.async_save=true",
)
STRATEGIES = {
    "ddp": ("strategy.name=ddp",),
    "fsdp": ("strategy.name=fsdp", "strategy.fsdp.wrap_modules=[Linear]"),
}


def staging(run: Path) -> bool:
    """A checkpoint write is in flight: its staging copy (dsf_dist/hooks/checkpoint.py) exists, not yet renamed."""
    try:
        return any(name.endswith(".partial") for name in os.listdir(run / "checkpoints"))
    except OSError:
        return False


def saved_step(checkpoint: Path) -> int:
    """The global step a checkpoint was saved at: a file's own record, or a sharded folder's meta.pt."""
    if checkpoint.is_file():
        return load_lightning_file(checkpoint)["global_step"]
    return torch.load(checkpoint / "meta.pt", weights_only=True)["global_step"]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_kill_during_a_background_write_keeps_the_previous_checkpoint(trained_run, tmp_path, name):
    config = (*ASYNC, *STRATEGIES[name])
    reference = trained_run(f"async-{name}", *sets(*config), verb="train")
    saves = results(reference, "train")["checkpoint_seconds"]
    assert saves["saves"] >= 10 and 0 < saves["blocked_s"] < saves["written_s"], saves

    job = start("train", "--output", "runs", *sets(*config, "run.name=async"), cwd=tmp_path, log=tmp_path / "log")
    run = tmp_path / "runs" / "async"
    last = run / "checkpoints" / "last.ckpt"
    wait_for(lambda: last.exists() and staging(run), 240, "a background write replacing last.ckpt", job, poll=0.001)
    kill_group(job)
    assert staging(run)  # where the kill landed: a write not yet renamed into place
    check_resumable(last)  # whole: the torn write is only the staging copy
    step = saved_step(last)
    print(f"killed while the write after step {step} was in flight")
    assert 0 < step < 10

    done = dsf("train", "-c", str(run / "config.yaml"), "--resume", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(run, "train")["resumed_from"] == "checkpoints/last.ckpt"
    assert not [path for path in (run / "checkpoints").iterdir() if path.name.endswith(".partial")]
    mine, theirs = (load_weights(folder / "checkpoints" / "last.ckpt") for folder in (run, reference))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[key], theirs[key]) for key in mine)
    assert job.returncode == -9
