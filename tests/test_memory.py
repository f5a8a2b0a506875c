"""Sharding shards: per-rank bytes measured from the real local shards on 2 CPU ranks."""

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from sharding_memory import measure_all  # noqa: E402


@pytest.mark.slow
@pytest.mark.distributed
def test_sharded_strategies_hold_about_half_of_ddp(tmp_path):
    figures = measure_all([256, 256], tmp_path)
    ddp = figures["ddp"]
    for name in ("fsdp (full)", "zero-3"):
        assert figures[name]["total"] <= 0.55 * ddp["total"], (name, figures[name], ddp)
    for name in ("zero-1", "zero-2"):
        assert figures[name]["optimizer_state"] <= 0.55 * ddp["optimizer_state"], (name, figures[name], ddp)
        assert figures[name]["parameters"] == ddp["parameters"]  # ZeRO-1/2 keep whole parameters
    assert figures["zero-2"]["gradients"] <= 0.55 * ddp["gradients"]
