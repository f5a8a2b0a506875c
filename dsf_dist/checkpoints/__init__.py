"""Checkpoints of every strategy: told apart, consolidated into one set of weights loadable at any world size,
and exported (formats.py)."""

from dsf_dist.checkpoints.formats import (
    WEIGHTS_FILE,
    check_resumable,
    checkpoint_format,
    export,
    load_into,
    load_lightning_file,
    load_weights,
)

__all__ = [
    "WEIGHTS_FILE",
    "check_resumable",
    "checkpoint_format",
    "export",
    "load_into",
    "load_lightning_file",
    "load_weights",
]
