"""A DeepSpeed ZeRO checkpoint, converted into a universal checkpoint that DeepSpeed loads on any number of ranks
(DeepSpeed >= 0.14.4: `deepspeed.checkpoint.ds_to_universal` and the `checkpoint.load_universal` config key).

ZeRO partitions the optimizer state by data-parallel rank, and DeepSpeed refuses a ZeRO checkpoint written on
another world size. The conversion gathers each parameter's fp32 weights and optimizer moments into one file per
parameter (`<tag>/zero/<name>/{fp32,exp_avg,exp_avg_sq,step}.pt`), beside copies of the model-state files (which
carry Lightning's loop, callback and data-loader state). DeepSpeed unpickles the source files freely while
converting, so the source is vetted first (`check_resumable`).

The universal checkpoint is written beside its source, as `.<name>.universal`, under a staging name renamed into
place when complete, and rebuilt by every conversion (its source may have been replaced since).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
from pathlib import Path

from dsf_dist.checkpoints import check_resumable
from dsf_dist.errors import DsfError

MINIMUM_DEEPSPEED = "0.14.4"


def zero_world_size(checkpoint: Path) -> int | None:
    """The data-parallel world size a DeepSpeed ZeRO checkpoint folder was written on (its optimizer shards, one
    per rank); None for anything else, universal checkpoints included."""
    latest = checkpoint / "latest"
    if not latest.is_file() or (checkpoint / "latest_universal").is_file():
        return None
    shards = list((checkpoint / latest.read_text().strip()).glob("*optim_states.pt"))
    return len(shards) or None


def universal_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(f".{checkpoint.name}.universal")


def to_universal(checkpoint: Path) -> Path:
    """Rank zero: convert the ZeRO checkpoint folder `checkpoint`; the universal checkpoint's folder."""
    check_resumable(checkpoint)
    try:
        from deepspeed.checkpoint.ds_to_universal import main as convert
    except ImportError:
        raise DsfError(
            f"{checkpoint}: resuming at another world size converts it to a universal checkpoint, which needs "
            f"DeepSpeed >= {MINIMUM_DEEPSPEED}; pip install -U 'deepspeed>={MINIMUM_DEEPSPEED}'"
        ) from None
    tag = (checkpoint / "latest").read_text().strip()
    target = universal_path(checkpoint)
    staging = target.with_name(f"{target.name}.partial")
    for old in (staging, target):
        shutil.rmtree(old, ignore_errors=True)
    arguments = argparse.Namespace(
        input_folder=str(checkpoint / tag),
        output_folder=str(staging / tag),
        num_extract_workers=1,  # no process pool: the conversion runs inside a training rank
        num_merge_workers=1,
        keep_temp_folder=False,
        strict=True,
        inject_missing_state=True,  # DeepSpeed records no universal_checkpoint_info outside Megatron
    )
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress
            convert(arguments)
    except Exception as err:  # DeepSpeed's own assertions and errors: one line
        shutil.rmtree(staging, ignore_errors=True)
        raise DsfError(
            f"{checkpoint}: DeepSpeed could not convert it to a universal checkpoint ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}); resume on its original number "
            "of ranks"
        ) from None
    for pointer in ("latest_universal", "latest"):  # `latest` too: dsf tells a DeepSpeed folder by it
        (staging / pointer).write_text(tag)
    os.replace(staging, target)
    return target
