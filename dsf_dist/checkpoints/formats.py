"""Checkpoints of every strategy -> one consolidated set of weights, loadable at any world size.

Formats, told apart by their layout (vetting.checkpoint_format); every one is vetted (vetting.py) before it loads:
- a Lightning `.ckpt` file (single process, DDP, FSDP with state_dict: full): torch.load(weights_only=True);
- a DeepSpeed ZeRO folder (`latest` + `checkpoint/`): DeepSpeed's own zero_to_fp32 consolidation;
- a torch.distributed.checkpoint folder (FSDP sharded, `*.distcp`): torch's dcp_to_torch_save;
- an exported `.safetensors` file (`dsf export`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from dsf_dist.checkpoints.vetting import checkpoint_format, damaged, load_torch_file, not_a_checkpoint, vet
from dsf_dist.errors import DsfError

WEIGHTS_FILE = "model.safetensors"


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The LightningModule's full state dict on CPU, whatever strategy wrote the checkpoint; vetted first, so a
    checkpoint holding anything but tensors and its format's own types is refused before a library reads it."""
    path = Path(path)
    kind = checkpoint_format(path)
    if kind == "lightning":
        return _state_dict(load_torch_file(path, kind), path)
    vet(path)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        if kind == "deepspeed":
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            return dict(get_fp32_state_dict_from_zero_checkpoint(str(path)))
        return _state_dict(_load_distcp(path), path)
    except DsfError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # vetted, but torn where the vetting does not read (a tensor's bytes): one line
        # (torch.distributed.checkpoint's CheckpointException derives from BaseException)
        text = str(err).strip()
        raise damaged(path, kind, f"{type(err).__name__}: {text.splitlines()[0] if text else ''}") from None


def check_resumable(path: Path) -> None:
    """Before a resume, a conversion or any library reads `path`: every file of the checkpoint (file or folder) that
    a loader would unpickle is vetted, and a folder's parts are there, so that a poisoned or torn checkpoint fails
    here in one line (a CheckpointError, exit 2) rather than inside Lightning or DeepSpeed. Tensors are not read."""
    vet(path)


def load_lightning_file(path: str | Path) -> dict:
    """A Lightning .ckpt file's whole dict (hyper-parameters included), weights-only; bad files are one line."""
    checkpoint = load_torch_file(Path(path), "lightning")
    if not isinstance(checkpoint, dict):
        raise not_a_checkpoint(Path(path), f"torch.save of a {type(checkpoint).__name__}, not Lightning's dict")
    return checkpoint


def _load_distcp(path: Path) -> dict:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "full.pt"
        dcp_to_torch_save(path, target)
        return torch.load(target, map_location="cpu", weights_only=True)


def _state_dict(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise not_a_checkpoint(path, f"torch.save of a {type(checkpoint).__name__}, not of a state dict")
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
