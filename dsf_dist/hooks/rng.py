"""Save and restore the random-number generators with each checkpoint, so that a resumed run draws the
same dropout masks and data order as one never interrupted (Lightning does not keep them).

Every rank's generators are kept: ranks draw alike only while they draw equally often, which a model with
inputs of different lengths per rank (token batches) does not. Lightning writes one rank's checkpoint dict, so
the ranks' states are gathered into it; on as many ranks each rank gets its own back, on another number of ranks
every rank takes rank zero's (that resume is not bit-identical anyway: README, Failure handling).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from dsf_dist.launchers.environment import gather_objects, process_group


class RNGState(pl.Callback):
    def state_dict(self) -> dict[str, Any]:
        # Called on every rank while the checkpoint dict is built: the gather is a collective all ranks reach.
        return {"per_rank": gather_objects(generator_states())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "per_rank" not in state:  # a checkpoint written before the states were kept per rank
            restore_generators(state)
            return
        ranks = state["per_rank"]
        rank, world = (dist.get_rank(), dist.get_world_size()) if process_group() else (0, 1)
        restore_generators(ranks[rank] if len(ranks) == world else ranks[0])


def generator_states() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    # Tensors and plain Python values only, so the checkpoint still loads with weights_only=True.
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_generators(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    keys = saved["keys"].numpy().astype(np.uint32)
    np.random.set_state((saved["name"], keys, saved["position"], saved["has_gauss"], saved["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
