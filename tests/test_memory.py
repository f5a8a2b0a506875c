"""Sharding shards: per-rank bytes measured from the real local shards on 2 CPU ranks.

DDP, FSDP, ZeRO-2 and ZeRO-3 are read from the session's shared 2-rank runs (tests/shared_runs.py: they report their
memory); ZeRO-1, which no shared run trains, from one 3-step run of the same model."""

import sys

import pytest
from conftest import REPO
from shared_runs import reference_run

sys.path.insert(0, str(REPO / "benchmarks"))
from sharding_memory import STRATEGIES, measure, rank_zero  # noqa: E402

SHARED = {"ddp": "ddp", "fsdp (full)": "fsdp", "zero-2": "deepspeed2", "zero-3": "deepspeed3"}


@pytest.mark.slow
@pytest.mark.distributed
def test_sharded_strategies_hold_about_half_of_ddp(trained_run, tmp_path):
    figures = {name: rank_zero(reference_run(trained_run, shared)) for name, shared in SHARED.items()}
    figures["zero-1"] = measure("zero-1", STRATEGIES["zero-1"], None, tmp_path)
    ddp = figures["ddp"]
    assert ddp["parameters"] > 0 and ddp["optimizer_state"] > ddp["parameters"]  # Adam: two moments per parameter
    for name in ("fsdp (full)", "zero-3"):
        assert figures[name]["total"] <= 0.55 * ddp["total"], (name, figures[name], ddp)
    for name in ("zero-1", "zero-2"):
        assert figures[name]["optimizer_state"] <= 0.55 * ddp["optimizer_state"], (name, figures[name], ddp)
        assert figures[name]["parameters"] == ddp["parameters"]  # ZeRO-1/2 keep whole parameters
    assert figures["zero-2"]["gradients"] <= 0.55 * ddp["gradients"]
