"""What every benchmark shares: the machine's description, dsf-dist as a subprocess, and RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.node() or 'host'}: {os.cpu_count()} cores, {platform.machine()}, {memory:.0f} GiB, Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


def load() -> str:
    """The 1-minute load average: other work on the machine shows up here, not in the ratios' footnotes."""
    return f"{os.getloadavg()[0]:.1f}"


def env(**extra: str) -> dict[str, str]:
    """One CPU thread per process everywhere (ranks share 2 cores), benchmarks/ importable, quiet warnings."""
    path = os.pathsep.join(filter(None, [str(REPO / "benchmarks"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "PYTHONWARNINGS": "ignore", **extra}


def run(command: list[str], cwd: Path, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"benchmark step failed ({' '.join(command)}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done


def dsf(*args: str) -> list[str]:
    return [sys.executable, "-m", "dsf_dist", *args]


def median_range(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def append(title: str, body: str) -> None:
    with RESULTS.open("a") as handle:
        handle.write(f"\n## {title} ({time.strftime('%Y-%m-%d')})\n\n{body.rstrip()}\n")
