"""No checkpoint runs code (DESIGN.md rule 6). Before dsf hands a checkpoint, file or folder, to torch, Lightning,
DeepSpeed or Ray, every file in it that one of their loaders would unpickle is read here by an allow-list unpickler;
a file that needs any other global is refused in one line naming the file and that global, before anything loads.

What each format's loaders read, and how dsf reads it first:
- a Lightning `.ckpt` file (one process, DDP, FSDP with state_dict full; Ray's reported `checkpoint.ckpt`): Lightning
  resumes with torch.load(weights_only=True), and so does dsf: torch's weights-only unpickler, no extra globals;
- a torch.distributed.checkpoint folder (FSDP sharded): `.metadata` (and any rank's `__N.metadata`), which
  FileSystemReader reads with pickle.load: an allow-list unpickler that resolves only DCP's metadata classes (DCP
  below); every non-tensor item inside the `*.distcp` files, which DCP's load planner reads with
  torch.load(weights_only=False): each one with torch's weights-only unpickler (tensor items torch itself loads
  weights-only); Lightning's `meta.pt` beside them (loops, callbacks): weights-only;
- a DeepSpeed ZeRO folder: `latest` is text, a tag that must name a folder inside the checkpoint; every `*.pt` in it
  (the engine's load_checkpoint, zero_to_fp32 and ds_to_universal call torch.load(weights_only=False) on them):
  weights-only with the DeepSpeed classes its optimizer state holds (DEEPSPEED below), each unpickled into an inert
  stand-in, so that not even those classes run. The folder's own zero_to_fp32.py is never run: dsf calls the
  installed deepspeed;
- `.safetensors`: no pickle at all; its header is checked against the file's size.

A file that refuses is one of three things, each its own one-line error with exit code 2: it holds Python objects
(UnsafeCheckpoint), it is truncated or damaged (DamagedCheckpoint), or it is not a checkpoint (NotACheckpoint).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dsf_dist.errors import DsfError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
# A file starting with a pickle opcode may be one (torch's legacy format starts with protocol 2's b"\x80"), and
# torch.load would unpickle it: it goes through the weights-only unpickler too. JSON, YAML's usual first letters
# and other text do not start with one: they are "not a checkpoint".
PICKLE_OPCODES = {op.code.encode("latin-1") for op in pickletools.opcodes}

DEEPSPEED = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",  # fp16 on GPUs
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)
"""The globals DeepSpeed 0.19's ZeRO optimizer state holds besides torch's tensors and containers (stage 1-3)."""

DCP = (
    "torch.distributed.checkpoint.metadata.Metadata",
    "torch.distributed.checkpoint.metadata.MetadataIndex",
    "torch.distributed.checkpoint.metadata.StorageMeta",
    "torch.distributed.checkpoint.metadata.TensorStorageMetadata",
    "torch.distributed.checkpoint.metadata.BytesStorageMetadata",
    "torch.distributed.checkpoint.metadata.ChunkStorageMetadata",
    "torch.distributed.checkpoint.metadata.TensorProperties",
    "torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING",
    "torch.distributed.checkpoint.filesystem._StorageInfo",
    "torch.Size",
    "torch.serialization._get_layout",
    "pathlib.PosixPath",  # StorageMeta.checkpoint_id
    "pathlib.PurePosixPath",
)
"""The globals of a torch.distributed.checkpoint `.metadata`, besides torch's dtypes (torch.float32, ...)."""


class CheckpointError(DsfError):
    """A checkpoint dsf will not hand to a loader; the message names the file."""

    exit_code = 2


class UnsafeCheckpoint(CheckpointError):
    """A file needs a global outside the allow-list: loading it could run code."""


class DamagedCheckpoint(CheckpointError):
    """A file is truncated, damaged, or a part of a folder checkpoint is missing."""


class NotACheckpoint(CheckpointError):
    """The path is no checkpoint format dsf knows (a JSON file, a folder of something else)."""


def unsafe(file: Path, found: str) -> UnsafeCheckpoint:
    return UnsafeCheckpoint(
        f"{file}: refused: the checkpoint holds Python objects besides tensors ({found}), and loading them could run "
        "code; dsf loads checkpoints weights-only and has no opt-out: re-save the weights (a state_dict of tensors) "
        "from code you trust"
    )


def damaged(file: Path, kind: str, detail: str) -> DamagedCheckpoint:
    return DamagedCheckpoint(
        f"{file}: cannot read this {kind} checkpoint, it is truncated or damaged ({detail[:200]}); "
        "use another checkpoint of the run"
    )


def not_a_checkpoint(path: Path, what: str) -> NotACheckpoint:
    return NotACheckpoint(
        f"{path}: not a checkpoint ({what}); give a .ckpt or .safetensors file, or a DeepSpeed or FSDP checkpoint "
        "folder, e.g. one under the run's checkpoints/ or export/"
    )


# -- formats --------------------------------------------------------------------------------------------------
def checkpoint_format(path: Path) -> str:
    """'lightning', 'safetensors', 'deepspeed' or 'distcp', told apart by the layout alone (nothing is read)."""
    if path.is_file():
        return "safetensors" if path.suffix == ".safetensors" else "lightning"
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint not found; give a path under the run's checkpoints/ or export/")
    if (path / "latest").is_file() or any(path.glob("*/*model_states.pt")) or any(path.glob("*model_states.pt")):
        return "deepspeed"
    if (path / ".metadata").is_file() or any(path.glob("*.distcp")):
        return "distcp"
    raise not_a_checkpoint(path, "a folder without DeepSpeed's `latest` or torch.distributed.checkpoint's .metadata")


def vet(path: Path) -> str:
    """Read every file of the checkpoint at `path` that a loader would unpickle with the allow-list unpickler its
    format needs, before any library reads it; its format. Raises a CheckpointError (exit 2) naming the file."""
    kind = checkpoint_format(path)
    if kind == "lightning":
        load_torch_file(path, kind, mmap=True)
    elif kind == "safetensors":
        vet_safetensors(path)
    elif kind == "deepspeed":
        vet_deepspeed(path)
    else:
        vet_distcp(path)
    return kind


# -- torch.save files -----------------------------------------------------------------------------------------
class Inert:
    """What a DeepSpeed class named in DEEPSPEED unpickles into while vetting: none of the class's code runs."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def load_torch_file(
    source: Path | IO[bytes], kind: str, stand_ins: tuple[str, ...] = (), mmap: bool = False, name: Path | None = None
) -> Any:
    """torch.load with torch's weights-only unpickler, `stand_ins` allowed as Inert; a refusal is one line naming
    the file (`name`, for a part of a file). With mmap the tensors' bytes are mapped, not read."""
    import torch

    file = name or Path(source)  # type: ignore[arg-type]
    head = _head(source, file, kind)
    if not head:
        raise damaged(file, kind, "empty")
    if not head.startswith(ZIP_MAGIC) and head[:1] not in PICKLE_OPCODES:
        raise not_a_checkpoint(file, "neither torch.save's zip format nor a pickle")
    try:
        with torch.serialization.safe_globals([(Inert, global_name) for global_name in stand_ins]):
            return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap and head == ZIP_MAGIC)
    except pickle.UnpicklingError as err:
        raise refusal(file, kind, str(err)) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # torch's zip reader and legacy loader: RuntimeError, EOFError, ValueError, ...
        raise damaged(file, kind, f"{type(err).__name__}: {_first_line(err)}") from None


def refusal(file: Path, kind: str, text: str) -> CheckpointError:
    """Torch's weights-only message (a dozen lines) as one: the global it refused, or else damage."""
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return unsafe(file, f"GLOBAL {found.group(1)}")
    reason = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    detail = reason.group(1) if reason else _first_line(text)
    if re.search(r"Can only (create|build)|call reduce", detail):  # an object of a class outside the allow-list
        return unsafe(file, detail.split(". ")[0][:160])
    return damaged(file, kind, detail)


# -- safetensors ----------------------------------------------------------------------------------------------
def vet_safetensors(file: Path) -> None:
    """No pickle inside; the header must be whole and cover the file (a truncated one does not)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(file, framework="pt"):
            pass
    except (SafetensorError, OSError, ValueError) as err:
        raise damaged(file, "safetensors", f"{type(err).__name__}: {_first_line(err)}") from None


# -- DeepSpeed ------------------------------------------------------------------------------------------------
def vet_deepspeed(folder: Path) -> None:
    if (folder / "latest").is_file():
        tag = deepspeed_tag(folder / "latest")
        if not any((folder / tag).glob("*model_states.pt")):
            raise damaged(folder / tag, "deepspeed", "no *model_states.pt in the folder `latest` names")
    if (folder / "latest_universal").is_file():  # what ds_to_universal writes; load_universal reads it
        deepspeed_tag(folder / "latest_universal")
    for file in torch_files(folder):
        load_torch_file(file, "deepspeed", DEEPSPEED, mmap=True)


def deepspeed_tag(latest: Path) -> str:
    """The tag in `latest`, which DeepSpeed joins to the folder: it must name a folder inside the checkpoint."""
    try:
        tag = latest.read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise damaged(latest, "deepspeed", f"{type(err).__name__}: {_first_line(err)}") from None
    if not re.fullmatch(r"[\w.-]+", tag) or tag in (".", ".."):
        raise UnsafeCheckpoint(
            f"{latest}: refused: it names {tag[:80]!r}, not a folder inside the checkpoint, and DeepSpeed would read "
            "from there; a ZeRO checkpoint's `latest` holds its tag, e.g. `checkpoint`"
        )
    if not (latest.parent / tag).is_dir():
        raise damaged(latest, "deepspeed", f"it names {tag!r}, which is missing")
    return tag


# -- torch.distributed.checkpoint -----------------------------------------------------------------------------
class UnsafeGlobal(pickle.UnpicklingError):
    """A global outside the allow-list, met by AllowListUnpickler before anything of it resolved."""


class AllowListUnpickler(pickle.Unpickler):
    """pickle's own unpickler, resolving only the globals named in `allowed` (Python's documented way to restrict
    globals: every opcode that reaches a class or function goes through find_class)."""

    def __init__(self, file: IO[bytes], allowed: dict[str, Any]) -> None:
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get(f"{module}.{name}")
        if found is None:
            raise UnsafeGlobal(f"GLOBAL {module}.{name}")
        return found


def dcp_globals() -> dict[str, Any]:
    """DCP's names resolved to torch's own objects (fixed names from this module, never from a file)."""
    import importlib

    import torch

    allowed = {}
    for full_name in DCP:
        module, _, name = full_name.rpartition(".")
        allowed[full_name] = getattr(importlib.import_module(module), name)
    dtypes = {name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)}
    return allowed | {f"torch.{name}": dtype for name, dtype in dtypes.items()}


def read_dcp_metadata(file: Path) -> Any:
    """A `.metadata` file through the allow-list unpickler: DCP's metadata classes, torch.Size and dtypes only."""
    from torch.distributed.checkpoint.metadata import Metadata

    try:
        with file.open("rb") as handle:
            found = AllowListUnpickler(handle, dcp_globals()).load()
    except UnsafeGlobal as err:
        raise unsafe(file, str(err)) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # EOFError, UnpicklingError, ValueError of a torn or foreign pickle
        raise damaged(file, "distcp", f"{type(err).__name__}: {_first_line(err)}") from None
    if not isinstance(found, Metadata):
        raise damaged(file, "distcp", f"it holds a {type(found).__name__}, not DCP's Metadata")
    return found


def vet_distcp(folder: Path) -> None:
    if not (folder / ".metadata").is_file():
        raise damaged(folder / ".metadata", "distcp", "missing")
    for file in sorted(folder.glob("*.metadata")):  # .metadata, and the per-rank __N.metadata some writers add
        metadata = read_dcp_metadata(file)
        for part, item in byte_items(folder, file, metadata):
            load_torch_file(item, "distcp", name=part)
    for file in torch_files(folder):  # Lightning's meta.pt: loops, callbacks, hyper-parameters
        load_torch_file(file, "distcp", mmap=True)


def byte_items(folder: Path, metadata_file: Path, metadata: Any) -> Iterator[tuple[Path, IO[bytes]]]:
    """Every item DCP stores as torch.save bytes (not a tensor), as DCP's reader would see it; each shard file whole
    and inside the folder."""
    from torch.distributed.checkpoint.filesystem import _StorageReaderTransforms
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    for index, info in (metadata.storage_data or {}).items():
        relative = Path(str(info.relative_path))
        if relative.is_absolute() or ".." in relative.parts:
            raise UnsafeCheckpoint(
                f"{metadata_file}: refused: it points at {str(relative)[:80]!r}, outside the checkpoint folder"
            )
        shard = folder / relative
        if not shard.is_file() or shard.stat().st_size < info.offset + info.length:
            raise damaged(shard, "distcp", f"{index.fqn} needs bytes {info.offset}-{info.offset + info.length}")
        if not isinstance(metadata.state_dict_metadata.get(index.fqn), BytesStorageMetadata):
            continue  # a tensor: torch's reader loads it weights-only itself
        part = Path(f"{shard} (item {index.fqn})")
        with shard.open("rb") as handle:
            handle.seek(info.offset)
            raw = io.BytesIO(handle.read(info.length))
        try:  # the stream transforms DCP's reader applies: none unless the writer used an extension
            stream = _StorageReaderTransforms().transform_load_stream(None, info.transform_descriptors or (), raw)
            item = io.BytesIO(stream.read())
        except Exception as err:
            raise damaged(part, "distcp", f"{type(err).__name__}: {_first_line(err)}") from None
        yield part, item


# -- helpers --------------------------------------------------------------------------------------------------
def torch_files(folder: Path) -> list[Path]:
    """Every *.pt under `folder`, through symlinked folders too (a loader follows them; Path.rglob does not)."""
    found, seen = [], set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up: walked already
            folders[:] = []
            continue
        seen.add(real)
        found += [Path(root) / name for name in files if name.endswith(".pt")]
    return sorted(found)


def _head(source: Path | IO[bytes], file: Path, kind: str) -> bytes:
    """The first bytes, which tell torch.save's zip format and a pickle from anything else."""
    if not isinstance(source, Path):
        head = source.read(len(ZIP_MAGIC))
        source.seek(0)
        return head
    try:
        with source.open("rb") as handle:
            return handle.read(len(ZIP_MAGIC))
    except OSError as err:
        raise damaged(file, kind, f"{type(err).__name__}: {err.strerror}") from None


def _first_line(err: BaseException | str) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else (type(err).__name__ if isinstance(err, BaseException) else "")
