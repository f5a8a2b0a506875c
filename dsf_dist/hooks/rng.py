"""Save and restore the random-number generators with each checkpoint, so that a resumed run draws the
same dropout masks and data order as one never interrupted (Lightning does not keep them)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


class RNGState(pl.Callback):
    def state_dict(self) -> dict[str, Any]:
        name, keys, position, has_gauss, cached = np.random.get_state()
        # Tensors and plain Python values only, so the checkpoint still loads with weights_only=True.
        return {
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

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        saved = state["numpy"]
        keys = saved["keys"].numpy().astype(np.uint32)
        np.random.set_state((saved["name"], keys, saved["position"], saved["has_gauss"], saved["cached"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
