"""Checkpoints of every strategy -> one consolidated set of weights, loadable at any world size.

Formats, told apart by their layout:
- a Lightning `.ckpt` file (single process, DDP, FSDP with state_dict: full): torch.load(weights_only=True);
- a DeepSpeed ZeRO folder (`latest` + `checkpoint/`): DeepSpeed's own zero_to_fp32 consolidation;
- a torch.distributed.checkpoint folder (FSDP sharded, `*.distcp`): torch's dcp_to_torch_save;
- an exported `.safetensors` file (`dsf export`).
"""

from __future__ import annotations

import pickle
import re
import tempfile
from pathlib import Path

import torch

from dsf_dist.errors import DsfError

WEIGHTS_FILE = "model.safetensors"


def checkpoint_format(path: Path) -> str:
    if path.is_file():
        return "safetensors" if path.suffix == ".safetensors" else "lightning"
    if (path / "latest").is_file():
        return "deepspeed"
    if any(path.glob("*.distcp")):
        return "distcp"
    raise DsfError(f"{path}: not a checkpoint dsf knows (a .ckpt or .safetensors file, a DeepSpeed or FSDP folder)")


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The LightningModule's full state dict on CPU, whatever strategy wrote the checkpoint."""
    path = Path(path)
    if not path.exists():
        raise DsfError(f"{path}: checkpoint not found; give a path under the run's checkpoints/ or export/")
    kind = checkpoint_format(path)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        if kind == "deepspeed":
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            return dict(get_fp32_state_dict_from_zero_checkpoint(str(path)))
        if kind == "distcp":
            return _state_dict(_load_distcp(path))
        return _state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except DsfError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # a truncated, foreign or poisoned file: say which, in one line
        # (torch.distributed.checkpoint's CheckpointException derives from BaseException)
        raise unreadable(path, kind, err) from None


def unreadable(path: Path, kind: str, err: BaseException) -> DsfError:
    """One line for a checkpoint that cannot be loaded; torch's own messages run to a dozen lines."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        found = re.search(r"GLOBAL [\w.]+", text)
        return DsfError(
            f"{path}: refused: the checkpoint holds Python objects besides tensors"
            f"{f' ({found.group(0)})' if found else ''}, and loading them could run code; dsf loads checkpoints "
            "weights-only and has no opt-out: re-save the weights (a state_dict of tensors) from code you trust"
        )
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return DsfError(
        f"{path}: cannot read this {kind} checkpoint, it is truncated or damaged ({type(err).__name__}: {first}); "
        "use another checkpoint of the run"
    )


def check_resumable(path: Path) -> None:
    """Before a resume: the checkpoint is whole and holds only tensors, so fit fails here in one line rather than
    inside Lightning. A file is opened memory-mapped (its tensors are not read); a folder's parts must exist."""
    kind = checkpoint_format(path)
    try:
        if kind == "lightning":
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        elif kind == "deepspeed":
            tag = (path / "latest").read_text().strip()
            if not any((path / tag).glob("*model_states.pt")):
                raise FileNotFoundError(f"{path / tag}: no *model_states.pt")
        elif not (path / ".metadata").is_file():
            raise FileNotFoundError(f"{path / '.metadata'} missing")
    except Exception as err:
        raise unreadable(path, kind, err) from None


def load_lightning_file(path: str | Path) -> dict:
    """A Lightning .ckpt file's whole dict (hyper-parameters included), weights-only; bad files are one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:
        raise unreadable(Path(path), "lightning", err) from None


def _load_distcp(path: Path) -> dict:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "full.pt"
        dcp_to_torch_save(path, target)
        return torch.load(target, map_location="cpu", weights_only=True)


def _state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint)
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def load_into(model: torch.nn.Module, path: str | Path) -> None:
    """Load a checkpoint of any format into an unsharded model, naming the keys that do not fit."""
    weights = load_weights(path)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise DsfError(
            f"{path}: does not fit {type(model).__name__} (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); check model.network / network_kwargs against the checkpoint's run"
        )


def export(path: str | Path, out_dir: Path, config_yaml: str) -> Path:
    """Write out_dir/model.safetensors (contiguous fp32/bf16 tensors) and out_dir/config.yaml."""
    from safetensors.torch import save_file

    from dsf_dist.files import atomic_target, write_text

    weights = {key: value.contiguous() for key, value in load_weights(path).items()}
    target = out_dir / WEIGHTS_FILE
    with atomic_target(target) as temp:
        save_file(weights, temp, metadata={"source": str(path), "format": "pt"})
    write_text(out_dir / "config.yaml", config_yaml)
    return target
