"""ZeRO-3 keeps each parameter gathered between its forward use and its backward use when the whole trace fits in
the reuse distance (DeepSpeed's default 1e9 elements). A forward-only pass before training (Lightning's sanity
check) left DeepSpeed's cached release decisions from a forward-only trace, and every later forward released each
parameter for the backward to fetch again; dsf clears them when a trace completes (tests/zero3_release.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import free_port

pytest.importorskip("deepspeed")
WORKER = Path(__file__).with_name("zero3_release.py")


def last_forward_releases(variant: str) -> int:
    env = os.environ | {"DS_ACCELERATOR": "cpu", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    env |= {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    done = subprocess.run([sys.executable, str(WORKER), variant], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])[variant]


@pytest.mark.slow
def test_a_forward_only_pass_leaves_no_release_after_forward_use():
    # DeepSpeed alone: the stale decisions release all four parameters (2 weights, 2 biases) after their forward use.
    assert last_forward_releases("stock") == 4
    assert last_forward_releases("dsf") == 0
