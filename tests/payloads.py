"""For the poison and vetting tests: the session's real checkpoints, and payloads planted in them.

`strategy_run(trained_run, name)` is a run of each strategy on 2 CPU ranks (tests/conftest.py trains each once per
session, as briefly as a checkpoint needs: 1 epoch of 2 steps); a test poisons a `copy_run` of it, never the run.
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
from conftest import sets

QUICK = (
    "trainer.devices=2",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "throughput.enabled=false",
)
STRATEGIES = {
    "vet-ddp": ("strategy.name=ddp",),
    "vet-fsdp": ("strategy.name=fsdp", "strategy.fsdp.wrap_modules=[Linear]"),
    "vet-zero2": ("strategy.name=deepspeed", "strategy.deepspeed.stage=2"),
    "vet-zero3": ("strategy.name=deepspeed", "strategy.deepspeed.stage=3"),
}
WEIGHT_KEYS = {f"network.{i}.{kind}" for i in (0, 3, 6) for kind in ("weight", "bias")}  # the default MLP's


def strategy_run(trained_run: Callable[..., Path], name: str) -> Path:
    """`dsf train` of the strategy `name` on 2 CPU ranks, shared by the session (read-only: copy it to change it)."""
    return trained_run(name, *sets(*STRATEGIES[name], *QUICK), verb="train")


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
