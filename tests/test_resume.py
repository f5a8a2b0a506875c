"""A stopped run loses nothing (DESIGN.md rule 7), on 2 CPU ranks with the real CLI:

- a run stopped mid-epoch (a signal, a SIGKILL between step checkpoints) and resumed ends with final weights and
  optimizer state bit-identical to one uninterrupted run of the same config, for ddp, fsdp and deepspeed, with no
  "not resumable" warning; for ddp through three mixed stops, the run folder moved before each resume;
- a moved run folder resumes its own newest checkpoint: no `last-vN` copies, the best-k still pruned, the paths in
  results/train.json relative to the run folder;
- a run checkpointed on 2 ranks continues on 1 (each strategy) and one on 1 continues on 2 (ddp): every training
  sample of the interrupted epoch is seen exactly once, the global step and the learning-rate schedule go on.

Every strategy has one uninterrupted reference run, the session's shared one (tests/shared_runs.py, also read by
test_strategies and test_chaos), and one run stopped mid-epoch, also a shared run (`stopped`), so that the tests
here spread over the xdist workers; every resume works on a copy. Stops come at seeded random steps
(DSF_RESUME_SEED, default 16; each test draws from its own generator), printed, so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import copy_run, dsf, results, sets
from interrupts import digest, seen
from ranks import finish, start
from shared_runs import EPOCHS, assert_same_tensors, optimizer_state, reference_run
from shared_runs import STRATEGIES as SHARED_STRATEGIES

from dsf_dist.checkpoints import load_lightning_file, load_weights

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

SEED = int(os.environ.get("DSF_RESUME_SEED", "16"))
STEPS_PER_EPOCH = 10  # 1,258 training samples / 2 ranks / batch 64: 10 steps (9 of 64 and one of 53 per rank)
# The shared reference runs' settings (tests/shared_runs.py), and two that do not change the weights: a checkpoint
# every 2 steps (what a SIGKILL falls back to) and a stop agreed at every step (so the stop step is known).
BASE = (
    "trainer.devices=2",
    "trainer.enable_progress_bar=false",
    f"trainer.max_epochs={EPOCHS}",
    "existing_model.kind=none",
    "checkpoint.every_n_train_steps=2",
    "run.stop_check_s=0",
)
QUICK = ("trainer.limit_val_batches=2", "throughput.enabled=false")  # for the runs no shared run is compared with
SCHEDULE = (  # lr halves every epoch: a schedule that must continue across a resume
    "model.scheduler.name=step",
    "model.scheduler.step_size=1",
    "model.scheduler.gamma=0.5",
)
SHARED = {"ddp": "ddp", "fsdp": "fsdp", "deepspeed": "deepspeed3"}  # ZeRO-3
STRATEGIES = {name: tuple(SHARED_STRATEGIES[shared]) for name, shared in SHARED.items()}


def draws(test: str) -> random.Random:
    """The test's own seeded generator: its steps do not depend on which tests a worker ran before it."""
    return random.Random(f"{SEED}:{test}")


FIRST_STOP = {name: draws(name).randint(1, 7) for name in STRATEGIES}  # SIGUSR1 after this step: stops after the next


def callbacks(*specs: str) -> str:
    return f"callbacks=[{', '.join(specs)}]"


def stop_at(step: int, signal: str, rank: int = 0) -> str:
    return f'{{target: "interrupts:StopAt", kwargs: {{step: {step}, signal: {signal}, rank: {rank}}}}}'


def record_samples(folder: Path) -> str:
    return f'{{target: "interrupts:SeenSamples", kwargs: {{folder: "{folder}"}}}}'


def resume(run: Path, *extra: str, timeout: float = 300):
    """`dsf train -c RUN/config.yaml --resume` for the run folder where it now is."""
    return dsf(
        "train", "-c", str(run / "config.yaml"), "--resume", "--output", str(run.parent), *sets(*extra), cwd=run.parent,
        timeout=timeout,
    )  # fmt: skip


def same_weights(run: Path, reference: Path) -> bool:
    mine, theirs = (load_weights(folder / "checkpoints" / "last.ckpt") for folder in (run, reference))
    return mine.keys() == theirs.keys() and all(torch.equal(mine[key], theirs[key]) for key in mine)


def assert_same_optimizer_state(run: Path, reference: Path) -> None:
    assert_same_tensors(*(optimizer_state(folder / "checkpoints" / "last.ckpt") for folder in (run, reference)))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def reference(trained_run, name: str) -> Path:
    return reference_run(trained_run, SHARED[name])


def seen_before_stop(run: Path) -> Path:
    """Where a stopped shared run's callback recorded the samples each rank saw before the stop."""
    return run.parent / f"{run.name}.seen"


def stopped(trained_run, name: str) -> Path:
    """The strategy's run stopped by SIGUSR1 mid-way through its first epoch: a shared run, trained once per session
    (exit 75: stopped, checkpoint saved), with the samples each rank saw before the stop. Resumes work on copies."""
    step = FIRST_STOP[name]
    print(f"[resume seed {SEED}] {name}: SIGUSR1 after step {step}")
    args = [
        *BASE,
        *STRATEGIES[name],
        callbacks(stop_at(step, "SIGUSR1"), record_samples(seen_before_stop(trained_run.root / f"cut-{name}"))),
    ]
    run = trained_run(f"cut-{name}", *sets(*args), verb="train", timeout=300, exit_code=75)
    assert f"stopped by SIGUSR1 at step {step + 1}" in trained_run.stderr(run), trained_run.stderr(run)[-3000:]
    return run


def moved(run: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    return Path(shutil.move(str(run), str(into / run.name)))


@pytest.mark.parametrize("name", ["fsdp", "deepspeed"])
def test_a_mid_epoch_stop_resumes_bit_identical(trained_run, tmp_path, name):
    run = copy_run(stopped(trained_run, name), tmp_path)
    done = resume(run, "callbacks=[]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not resumable" not in done.stderr and "reshuffled" not in done.stderr
    record = results(run, "train")
    assert record["resumed_from"] == "checkpoints/last.ckpt"
    assert record["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert same_weights(run, reference(trained_run, name))
    assert_same_optimizer_state(run, reference(trained_run, name))


def test_three_mixed_stops_of_a_moving_run_folder_end_bit_identical(trained_run, tmp_path):
    """SIGUSR1 (rank 0), SIGKILL (every rank at once, between step checkpoints), SIGTERM (rank 1 only); the run
    folder moves to another place before each resume, and the last two resumes run from moved folders."""
    first = FIRST_STOP["ddp"] + 1
    rng = draws("three stops")
    kill = rng.randint(first + 1, 13)
    term = rng.randint(kill + 1, 17)
    print(f"[resume seed {SEED}] ddp: SIGUSR1 after step {first - 1}, SIGKILL after {kill}, SIGTERM after {term}")
    run = copy_run(stopped(trained_run, "ddp"), tmp_path / "a")

    # In its own process group (StopAt kills the whole group), like every job a launcher starts.
    killed = start(
        "train", "-c", str(run / "config.yaml"), "--resume", "--output", str(run.parent),
        *sets(callbacks(stop_at(kill, "SIGKILL"))), cwd=run.parent, log=tmp_path / "killed.log",
    )  # fmt: skip
    assert finish(killed, timeout=300) == -9, (tmp_path / "killed.log").read_text()[-3000:]
    newest = load_lightning_file(run / "checkpoints" / "last.ckpt")["global_step"]
    assert newest == max(first, kill - kill % 2 if kill % 2 else kill - 2)  # the last step checkpoint before the kill

    run = moved(run, tmp_path / "b")
    stopped_again = resume(run, callbacks(stop_at(term, "SIGTERM", rank=1)))
    assert stopped_again.returncode == 75, stopped_again.stderr[-3000:]
    assert f"stopped by SIGTERM at step {term + 1}" in stopped_again.stderr

    run = moved(run, tmp_path / "c")
    done = resume(run, "callbacks=[]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_weights(run, reference(trained_run, "ddp"))
    assert_same_optimizer_state(run, reference(trained_run, "ddp"))
    record = results(run, "train")
    assert record["resumed_from"] == "checkpoints/last.ckpt"
    assert record["best_checkpoint"].startswith("checkpoints/") and record["global_step"] == EPOCHS * STEPS_PER_EPOCH
    # No last-vN beside last.ckpt, and top-1 kept one best: the moved folder's own bookkeeping.
    names = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert names == sorted(["last.ckpt", Path(record["best_checkpoint"]).name]), names


def training_digests(run: Path) -> Counter:
    from dsf_dist.config import load_config
    from dsf_dist.pipeline import Main

    split = Main(load_config(run / "config.yaml"), run_dir=run).split()
    return Counter(digest(split.train[i][0]) for i in range(len(split.train)))


def epoch_samples(records: list[dict], epoch: int, before_step: int | None = None) -> Counter:
    return Counter(
        sample
        for record in records
        if record["epoch"] == epoch and (before_step is None or record["step"] < before_step)
        for sample in record["samples"]
    )


def check_carried_over(seen_before: Path, resumed: Path, seen_after: Path, stop_step: int, steps_after: int):
    """The interrupted epoch saw every training sample exactly once across the two world sizes; the next epoch too;
    the resumed run began at the stopped step and ran the steps its world size needs."""
    before, after = seen(seen_before), seen(seen_after)
    expected = training_digests(resumed)
    assert epoch_samples(before, 0, stop_step) + epoch_samples(after, 0) == expected
    assert epoch_samples(after, 1) == expected
    assert min(record["step"] for record in after) == stop_step
    assert results(resumed, "train")["global_step"] == stop_step + steps_after


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_two_ranks_continue_on_one(trained_run, tmp_path, name):
    source = stopped(trained_run, name)
    run = copy_run(source, tmp_path)
    step = FIRST_STOP[name] + 1
    done = resume(run, "trainer.devices=1", callbacks(record_samples(tmp_path / "seen")), timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed a checkpoint of 2 rank(s) on 1" in done.stderr
    left = ceil_div(1258 - step * 128, 64)  # the rest of the epoch in batches of one rank, then a whole epoch
    check_carried_over(seen_before_stop(source), run, tmp_path / "seen", step, left + 2 * STEPS_PER_EPOCH)
    if name == "deepspeed":  # the universal checkpoint DeepSpeed resumed from holds the stopped run's weights
        weights = load_weights(source / "checkpoints" / "last.ckpt")
        universal = run / "checkpoints" / ".last.ckpt.universal" / "checkpoint" / "zero"
        assert {folder.name for folder in universal.iterdir() if folder.is_dir()} == set(weights)
        for key, value in weights.items():
            saved = torch.load(universal / key / "fp32.pt", weights_only=True)
            saved = saved["param"] if isinstance(saved, dict) else saved  # ZeRO-3 saves the tensor itself
            assert torch.equal(saved.reshape(value.shape), value), key


def test_one_rank_continues_on_two(tmp_path):
    step = draws("one to two").randint(3, 15)
    print(f"[resume seed {SEED}] ddp on 1 rank: SIGUSR1 after step {step}")
    args = [*BASE, *QUICK, *SCHEDULE, *STRATEGIES["ddp"], "trainer.devices=1", "run.name=one"]
    args.append(callbacks(stop_at(step, "SIGUSR1"), record_samples(tmp_path / "seen")))
    done = dsf("train", "--output", str(tmp_path), *sets(*args), cwd=tmp_path, timeout=300)
    assert done.returncode == 75, done.stderr[-3000:]
    run, stop_step = tmp_path / "one", step + 1
    done = resume(run, "trainer.devices=2", callbacks(record_samples(tmp_path / "seen-after")))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed a checkpoint of 1 rank(s) on 2" in done.stderr
    left = ceil_div(ceil_div(1258 - stop_step * 64, 2), 64)  # per rank: the rest of the epoch, then a whole epoch
    check_carried_over(tmp_path / "seen", run, tmp_path / "seen-after", stop_step, left + STEPS_PER_EPOCH)
    state = load_lightning_file(run / "checkpoints" / "last.ckpt")  # the schedule went on: halved after each epoch
    assert state["lr_schedulers"][0]["last_epoch"] == EPOCHS
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(3e-3 * 0.5**EPOCHS)


@pytest.fixture(scope="module")
def token_project(tmp_path_factory) -> Path:
    """A tiny BERT tagger on generated sentences (tests/token_data.py): token batches of different lengths per
    rank, so the ranks' dropout draws differ and each rank's own RNG state has to come back."""
    import token_data
    import yaml

    root = tmp_path_factory.mktemp("tokens")
    token_data.write_sentences(root / "train.jsonl", 160, seed=0)
    token_data.write_sentences(root / "test.jsonl", 60, seed=1)
    token_data.save_base_model(root / "base")
    config = {
        "model": {"task": "token_classification", "pretrained": str(root / "base")},
        "data": {
            "dataset": "tokens",
            "path": str(root / "train.jsonl"),
            "test_path": str(root / "test.jsonl"),
            "split": {"train": 0.85, "val": 0.15, "test": 0},
            "batch_size": 16,  # 136 training sentences: 5 steps per epoch on 2 ranks
        },
        "existing_model": {"kind": "none"},
    }
    (root / "tokens.yaml").write_text(yaml.safe_dump(config))
    return root


def test_a_transformer_task_resumes_mid_epoch_bit_identical(token_project, tmp_path):
    os.environ["HF_HUB_OFFLINE"] = "1"
    # One epoch of 5 steps: the stop (after step 1 to 3) is mid-epoch, and the resume ends the run.
    common = [*BASE, *QUICK, *STRATEGIES["ddp"], "checkpoint.monitor=val_loss", "trainer.max_epochs=1"]
    args = ["-c", str(token_project / "tokens.yaml"), "--output", str(tmp_path)]
    whole = dsf("train", *args, *sets(*common, "run.name=whole"), cwd=tmp_path, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]
    step = draws("transformer").randint(1, 3)
    print(f"[resume seed {SEED}] token classification: SIGUSR1 after step {step}")
    cut = dsf("train", *args, *sets(*common, "run.name=cut", callbacks(stop_at(step, "SIGUSR1"))), cwd=tmp_path)
    assert cut.returncode == 75, cut.stderr[-3000:]
    done = resume(tmp_path / "cut", "callbacks=[]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_weights(tmp_path / "cut", tmp_path / "whole")


def test_a_user_loader_without_state_says_once_that_the_rest_of_the_epoch_is_reshuffled(tmp_path):
    """A user's data module whose training loader is a plain DataLoader (tests/user_project.py): the resume works,
    and instead of Lightning's multi-line warning dsf says once, in one line, what is inexact and how to fix it."""
    user = ["data.datamodule=user_project:DigitsDataModule", "model.module=user_project:DigitsLitModule"]
    args = [*user, "trainer.max_epochs=1", "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false"]
    args += ["existing_model.kind=none", "throughput.enabled=false", "run.name=user"]
    cut = dsf("train", "--output", str(tmp_path), *sets(*args, callbacks(stop_at(3, "SIGUSR1"))), cwd=tmp_path)
    assert cut.returncode == 75, cut.stderr[-3000:]
    done = resume(tmp_path / "user", "callbacks=[]")
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "reshuffled" in line]
    assert said == [
        "dsf: resumed mid-epoch with training loaders (DataLoader) that have no state_dict, so the rest of this "
        "epoch is reshuffled; for an exact resume return a torchdata StatefulDataLoader (with a sampler that has "
        "state_dict/load_state_dict) from train_dataloader"
    ]
    assert "not resumable" not in done.stderr
