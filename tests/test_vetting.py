"""No checkpoint runs code, on real checkpoints: every strategy's (2 CPU ranks, tests/payloads.py) passes the vetting
whole; a payload planted in each kind of file a loader would unpickle is refused in one line naming that file and
the global, exit 2, nothing written, and the payload never runs, while the library's own reader of that file would
have run it; and every entry path (dsf test, dsf export, the existing model's kinds, resume) refuses it through the
real CLI before anything loads."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import dsf, fingerprint, results, sets
from payloads import (
    BEST,
    WEIGHT_KEYS,
    plant_in_dcp_byte_item,
    plant_in_dcp_metadata,
    plant_in_torch_file,
    stopped_copy,
    strategy_run,
    trusted_load,
)

from dsf_dist.checkpoints import (
    DamagedCheckpoint,
    NotACheckpoint,
    UnsafeCheckpoint,
    check_resumable,
    load_weights,
    vet,
)

FORMATS = {"ddp": "lightning", "fsdp": "distcp", "deepspeed2": "deepspeed", "deepspeed3": "deepspeed"}
STATES = "checkpoint/zero_pp_rank_{}_mp_rank_00_{}_states.pt"


def read_metadata(folder: Path) -> None:
    from torch.distributed.checkpoint import FileSystemReader

    FileSystemReader(folder).read_metadata()  # what DCP's load and dcp_to_torch_save call first


def consolidate(folder: Path) -> None:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(folder, folder.parent / "consolidated.pt")


@dataclass(frozen=True)
class Kind:
    run: str
    plant: Callable[[Path, Path], Path]  # (checkpoint, marker) -> the poisoned file
    library_read: Callable[[Path, Path], object]  # (checkpoint, poisoned file): how a library would read it


def in_file(relative: str) -> Callable[[Path, Path], Path]:
    return lambda checkpoint, marker: plant_in_torch_file(checkpoint / relative if relative else checkpoint, marker)


FILE_KINDS = {
    "lightning-ckpt": Kind("ddp", in_file(""), lambda checkpoint, file: trusted_load(file)),
    "dcp-metadata": Kind("fsdp", plant_in_dcp_metadata, lambda checkpoint, file: read_metadata(checkpoint)),
    "dcp-byte-item": Kind("fsdp", plant_in_dcp_byte_item, lambda checkpoint, file: consolidate(checkpoint)),
    "lightning-meta-pt": Kind("fsdp", in_file("meta.pt"), lambda checkpoint, file: trusted_load(file)),
    "zero2-model-states": Kind(
        "deepspeed2", in_file("checkpoint/mp_rank_00_model_states.pt"), lambda checkpoint, file: trusted_load(file)
    ),
    "zero2-optim-states": Kind(
        "deepspeed2", in_file(STATES.format(1, "optim")), lambda checkpoint, file: trusted_load(file)
    ),
    "zero3-model-states": Kind(
        "deepspeed3", in_file(STATES.format(1, "model")), lambda checkpoint, file: trusted_load(file)
    ),
    "zero3-optim-states": Kind(
        "deepspeed3", in_file(STATES.format(0, "optim")), lambda checkpoint, file: trusted_load(file)
    ),
}


def copy_checkpoint(trained_run, name: str, into: Path, which: str = "last.ckpt") -> Path:
    source = strategy_run(trained_run, name) / "checkpoints" / which
    target = into / which
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


def one_line_refusal(err: BaseException, file: Path) -> None:
    message = str(err)
    assert "\n" not in message and message.startswith(f"{file}: refused:"), message
    assert "GLOBAL posix.system" in message and err.exit_code == 2, message


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_checkpoint_dsf_writes_passes_the_vetting_whole(trained_run, name):
    """RNG, loop and callback state, DeepSpeed's client and optimizer state, DCP's metadata: only allowed types."""
    checkpoints = strategy_run(trained_run, name) / "checkpoints"
    found = sorted(path.name for path in checkpoints.iterdir())
    assert found == [BEST, "last.ckpt"], found
    for checkpoint in checkpoints.iterdir():
        assert vet(checkpoint) == FORMATS[name]
        check_resumable(checkpoint)
        assert set(load_weights(checkpoint)) == WEIGHT_KEYS


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("kind", list(FILE_KINDS))
def test_a_payload_in_each_file_kind_is_refused_and_never_runs(trained_run, tmp_path, kind):
    case = FILE_KINDS[kind]
    checkpoint = copy_checkpoint(trained_run, case.run, tmp_path)
    assert vet(checkpoint) == FORMATS[case.run]  # whole and clean before the payload goes in
    marker = tmp_path / "pwned"
    poisoned = case.plant(checkpoint, marker)
    before = fingerprint(tmp_path)
    for read in (vet, check_resumable, load_weights):
        with pytest.raises(UnsafeCheckpoint) as refused:
            read(checkpoint)
        one_line_refusal(refused.value, poisoned)
    assert not marker.exists() and fingerprint(tmp_path) == before  # nothing ran, nothing written
    # The hole the vetting closes: the library's own reader of this file runs the payload.
    case.library_read(checkpoint, poisoned)
    assert marker.exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeeds_latest_must_name_a_folder_inside_the_checkpoint(trained_run, tmp_path):
    checkpoint = copy_checkpoint(trained_run, "deepspeed3", tmp_path)
    (checkpoint / "latest").write_text("../../elsewhere")
    with pytest.raises(UnsafeCheckpoint) as refused:
        check_resumable(checkpoint)
    message = str(refused.value)
    assert message.startswith(f"{checkpoint / 'latest'}: refused: it names '../../elsewhere'"), message
    (checkpoint / "latest").write_text("global_step9")
    with pytest.raises(DamagedCheckpoint, match="it names 'global_step9', which is missing"):
        check_resumable(checkpoint)


@pytest.mark.slow
@pytest.mark.distributed
def test_a_payload_behind_a_symlinked_folder_is_found(trained_run, tmp_path):
    """DeepSpeed follows a symlinked tag folder (pathlib's rglob does not): its states are vetted all the same."""
    checkpoint = copy_checkpoint(trained_run, "deepspeed3", tmp_path)
    (checkpoint / "checkpoint").rename(tmp_path / "states")
    (checkpoint / "checkpoint").symlink_to(tmp_path / "states")
    assert vet(checkpoint) == "deepspeed"
    marker = tmp_path / "pwned"
    poisoned = plant_in_torch_file(checkpoint / STATES.format(0, "optim"), marker)
    with pytest.raises(UnsafeCheckpoint) as refused:
        check_resumable(checkpoint)
    one_line_refusal(refused.value, poisoned)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_a_dcp_shard_outside_the_folder_is_refused(trained_run, tmp_path):
    checkpoint = copy_checkpoint(trained_run, "fsdp", tmp_path)
    metadata = pickle.loads((checkpoint / ".metadata").read_bytes())
    next(iter(metadata.storage_data.values())).relative_path = "../outside.distcp"
    (checkpoint / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(UnsafeCheckpoint) as refused:
        vet(checkpoint)
    assert str(refused.value) == (
        f"{checkpoint / '.metadata'}: refused: it points at '../outside.distcp', outside the checkpoint folder"
    )


# -- every entry path, once, through the real CLI ----------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    run: str
    poisoned: str  # the file, relative to the run folder
    argv: Callable[[Path, Path], list[str]]  # (run copy, output root) -> the dsf command line

    def plant(self, run: Path, marker: Path) -> Path:
        file = run / self.poisoned
        return (
            plant_in_dcp_metadata(file.parent, marker)
            if file.name == ".metadata"
            else plant_in_torch_file(file, marker)
        )


def resume(verb: str, *how: str) -> Callable[[Path, Path], list[str]]:
    return lambda run, root: [verb, "-c", str(run / "config.yaml"), *how, *sets(f"run.output_root={root}")]


def existing(kind: str, path: str) -> Callable[[Path, Path], list[str]]:
    """`dsf eval` of the run copy, whose existing model is of `kind` at `path` in the copy."""
    return lambda run, root: [
        "eval",
        str(run),
        *sets(f"existing_model.kind={kind}", f"existing_model.path={run / path}"),
    ]


ENTRIES = {
    "dsf test --checkpoint": Entry(
        "deepspeed3",
        f"checkpoints/last.ckpt/{STATES.format(1, 'optim')}",
        lambda run, root: ["test", str(run), "--checkpoint", str(run / "checkpoints" / "last.ckpt")],
    ),
    "dsf export": Entry("fsdp", f"checkpoints/{BEST}/.metadata", lambda run, root: ["export", str(run)]),
    "existing_model checkpoint": Entry("ddp", "checkpoints/last.ckpt", existing("checkpoint", "checkpoints/last.ckpt")),
    "existing_model previous": Entry("ddp", f"checkpoints/{BEST}", existing("previous", ".")),
    "dsf train --resume (ddp file)": Entry("ddp", "checkpoints/last.ckpt", resume("train", "--resume")),
    "run.resume=auto (fsdp folder)": Entry(
        "fsdp", "checkpoints/last.ckpt/meta.pt", resume("train", "--set", "run.resume=auto")
    ),
    "dsf run --resume (zero-2 folder)": Entry(
        "deepspeed2", "checkpoints/last.ckpt/checkpoint/mp_rank_00_model_states.pt", resume("run", "--resume")
    ),
}


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_each_entry_path_refuses_a_poisoned_checkpoint_in_one_line(trained_run, tmp_path, entry):
    case = ENTRIES[entry]
    run = stopped_copy(trained_run, case.run, tmp_path)
    # The copy's training record names the shared run's best checkpoint (an absolute path): point it at the copy's.
    record = results(run, "train")
    record["best_checkpoint"] = str(run / "checkpoints" / Path(record["best_checkpoint"]).name)
    (run / "results" / "train.json").write_text(json.dumps(record))
    marker = tmp_path / "pwned"
    poisoned = case.plant(run, marker)
    before = fingerprint(tmp_path)
    done = dsf(*case.argv(run, tmp_path), cwd=tmp_path, timeout=180)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"dsf: error: {poisoned}: refused:") and "GLOBAL posix.system" in lines[0], lines
    assert not marker.exists() and fingerprint(tmp_path) == before  # nothing ran, nothing written


def test_what_is_not_a_checkpoint_says_so(tmp_path):
    """A results file or a folder of logs given as a checkpoint: 'not a checkpoint'; an empty file: damaged."""
    (tmp_path / "test.json").write_text('{"accuracy": 0.9}')
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text("epoch,loss\n0,1.0\n")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    for path, error, words in (
        (tmp_path / "test.json", NotACheckpoint, "not a checkpoint (neither torch.save's zip format nor a pickle)"),
        (tmp_path / "logs", NotACheckpoint, "not a checkpoint (a folder without DeepSpeed's `latest`"),
        (tmp_path / "empty.ckpt", DamagedCheckpoint, "truncated or damaged (empty)"),
    ):
        with pytest.raises(error) as refused:
            load_weights(path)
        assert str(refused.value).startswith(f"{path}: ") and words in str(refused.value)
        assert refused.value.exit_code == 2
