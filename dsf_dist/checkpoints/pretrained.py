"""A Hugging Face task's checkpoint of any strategy as a Hugging Face folder (`dsf export RUN --format hf`):
config.json (with the data's id2label / label2id), model.safetensors and the tokenizer, written by save_pretrained,
so that AutoModelFor<Task> and AutoTokenizer load it with no dsf installed. The folder is written whole or not at
all. The task's LightningModule keeps its transformers model as `network`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsf_dist.checkpoints.formats import load_into


def export_pretrained_folder(module: Any, checkpoint: str, tokenizer: Any, out: Path) -> Path:
    """Load `checkpoint` (dsf_dist.checkpoints consolidates every strategy's format, ZeRO-3 and FSDP shards
    included) into the run's own module, and save its network and the tokenizer into `out`."""
    load_into(module, checkpoint)

    def write(folder: Path) -> None:
        module.network.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    save_folder(out, write)
    return out


def save_folder(target: Path, write: Callable[[Path], Any]) -> None:
    """`write` fills a staging folder beside `target`, which then replaces `target` in two renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    staging.chmod(0o755)  # mkdtemp makes 0700; the folder is for others to read
    try:
        write(staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
