"""The prepared GPU check (benchmarks/gpu_strategies.py) runs; on CPU-only machines at a tiny size."""

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
