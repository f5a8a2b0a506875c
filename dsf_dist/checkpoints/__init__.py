"""Checkpoints of every strategy: told apart, vetted so that none runs code (vetting.py), consolidated into one set
of weights loadable at any world size, and exported (formats.py)."""

from dsf_dist.checkpoints.formats import (
    WEIGHTS_FILE,
    check_resumable,
    checkpoint_format,
    export,
    load_into,
    load_lightning_file,
    load_weights,
)
from dsf_dist.checkpoints.vetting import CheckpointError, DamagedCheckpoint, NotACheckpoint, UnsafeCheckpoint, vet

__all__ = [
    "WEIGHTS_FILE",
    "CheckpointError",
    "DamagedCheckpoint",
    "NotACheckpoint",
    "UnsafeCheckpoint",
    "check_resumable",
    "checkpoint_format",
    "export",
    "load_into",
    "load_lightning_file",
    "load_weights",
    "vet",
]
