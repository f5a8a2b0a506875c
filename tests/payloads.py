"""For the poison and vetting tests: the session's real checkpoints, and payloads planted in them.

`strategy_run(trained_run, name)` is the session's 2-rank reference run of each strategy (tests/shared_runs.py: the
runs the strategy, resume and memory tests read too, so no run is trained for these tests alone), with `last.ckpt`
and the best checkpoint, `BEST`; a test poisons a `copy_run` of it, never the run.
Each `plant_*` puts a payload where a loader would unpickle it: unpickling runs `touch <marker>`, so a marker
that never appears shows that nothing ran.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from conftest import copy_run
from shared_runs import EPOCHS, reference_run

BEST = f"epoch{EPOCHS - 1:03d}-step{EPOCHS * 10:06d}.ckpt"  # the last epoch's (10 steps an epoch), kept as the best
WEIGHT_KEYS = {f"network.{i}.{kind}" for i in (0, 3, 6) for kind in ("weight", "bias")}  # the default MLP's


def strategy_run(trained_run: Callable[..., Path], name: str) -> Path:
    """The 2-rank run of strategy `name` (ddp, fsdp, deepspeed2, deepspeed3), shared by the session (read-only:
    copy it to change it)."""
    return reference_run(trained_run, name)


def stopped_copy(trained_run: Callable[..., Path], name: str, into: Path) -> Path:
    """A copy of that run as a preempted run would be: its pipeline not finished (no results/done.json), so that
    a resume reads its checkpoints instead of saying the run is done."""
    run = copy_run(strategy_run(trained_run, name), into)
    (run / "results" / "done.json").unlink()
    return run


class Payload:
    """Unpickling this runs `touch marker`: what a malicious checkpoint would do with any command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def trusted_load(file: Path):
    """The test's own read of a file it wrote or poisoned itself (everything resolves: only for such files)."""
    return torch.load(file, map_location="cpu", weights_only=False)


def plant_in_torch_file(file: Path, marker: Path) -> Path:
    """A torch.save file (Lightning .ckpt, meta.pt, DeepSpeed *_states.pt) with a payload beside its contents."""
    contents = trusted_load(file)
    contents["dsf_test_payload"] = Payload(marker)
    torch.save(contents, file)
    return file


def plant_in_dcp_metadata(folder: Path, marker: Path) -> Path:
    """torch.distributed.checkpoint's .metadata (read with pickle.load) with a payload in its planner data."""
    file = folder / ".metadata"
    metadata = pickle.loads(file.read_bytes())
    metadata.planner_data["dsf_test_payload"] = Payload(marker)
    file.write_bytes(pickle.dumps(metadata))
    return file


def plant_in_dcp_byte_item(folder: Path, marker: Path) -> Path:
    """A non-tensor item of a .distcp shard (read with torch.load(weights_only=False)) replaced by a payload: the
    torch.save bytes are appended to the shard and the clean .metadata points the item at them. Returns how dsf
    names the item: '<shard> (item <key>)'."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    metadata = pickle.loads((folder / ".metadata").read_bytes())
    fqn = next(k for k, v in metadata.state_dict_metadata.items() if isinstance(v, BytesStorageMetadata))
    index = next(index for index in metadata.storage_data if index.fqn == fqn)
    info = metadata.storage_data[index]
    blob = io.BytesIO()
    torch.save(Payload(marker), blob)
    shard = folder / info.relative_path
    info.offset, info.length = shard.stat().st_size, len(blob.getvalue())
    with shard.open("ab") as handle:
        handle.write(blob.getvalue())
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    return Path(f"{shard} (item {fqn})")


def truncate(file: Path) -> Path:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    return file
