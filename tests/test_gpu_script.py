"""The prepared GPU check (benchmarks/gpu_strategies.py) runs; on CPU-only machines at a tiny size."""

import json
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_gpu_strategy_script_cpu_smoke():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_strategies.py"), "--cpu-smoke", "--only", "fsdp"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert '"export_ok": true' in done.stdout


@pytest.mark.slow
def test_gpt2_mfu_script_cpu_smoke():
    """benchmarks/gpt2_mfu.py at its tiny size: both loops train, dsf's monitor counts tokens, and torch's FLOP
    counter agrees with the analytic 6N + 12·L·d·T per token within the embedding lookups it does not count."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpt2_mfu.py"), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["raw"]["tokens_per_s"] > 0 and figures["dsf"]["tokens_per_s"] > 0
    assert figures["dsf"]["tokens_per_s"] == pytest.approx(32 * figures["dsf"]["samples_per_s"])  # context 32
    per_token = figures["dsf"]["flops_per_sample"] / 32
    assert 0.8 < per_token / (6 * figures["raw"]["parameters"] + 12 * 2 * 64 * 32) < 1.05
