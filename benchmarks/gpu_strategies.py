"""GPU check of the strategy layer: fit each strategy on one GPU in bf16, export, test the export.

    python benchmarks/gpu_strategies.py              # on a GPU machine; appends to RESULTS.md
    python benchmarks/gpu_strategies.py --cpu-smoke  # the same script at a tiny size on CPU (fp32)

Each strategy: `dsf run` (fit, test, eval, compare), `dsf export`, `dsf test --checkpoint export` in one
process; records wall time, test accuracy under the strategy and of the export. Exit 1 if any fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STRATEGIES = {
    "auto": ["strategy.name=auto"],
    "ddp": ["strategy.name=ddp"],
    "fsdp": ["strategy.name=fsdp", "strategy.fsdp.mixed_precision=bf16"],
    "deepspeed-2": ["strategy.name=deepspeed", "strategy.deepspeed.stage=2"],
    "deepspeed-3": ["strategy.name=deepspeed", "strategy.deepspeed.stage=3"],
}


def dsf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsf_dist", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def check(name: str, overrides: list[str], device: list[str], cwd: Path) -> dict:
    sets = [*overrides, *device, f"run.name={name}", "run.output_root=runs", "trainer.enable_progress_bar=false"]
    started = time.perf_counter()
    done = dsf("run", *[arg for item in sets for arg in ("--set", item)], cwd=cwd)
    row = {"strategy": name, "fit_test_eval_s": round(time.perf_counter() - started, 1), "ok": done.returncode == 0}
    if not row["ok"]:
        return row | {"error": done.stderr.strip().splitlines()[-1:]}
    run = cwd / "runs" / name
    tested = json.loads((run / "results" / "test.json").read_text())
    exported = dsf("export", str(run), cwd=cwd)
    retest = dsf(
        "test",
        str(run),
        "--checkpoint",
        str(run / "export" / "model.safetensors"),
        "--set",
        "strategy.name=auto",
        "--set",
        "trainer.devices=1",
        cwd=cwd,
    )
    again = json.loads((run / "results" / "test.json").read_text()) if retest.returncode == 0 else {}
    return row | {
        "test_accuracy": tested["accuracy"],
        "export_ok": exported.returncode == 0,
        "export_test_accuracy": again.get("accuracy"),
    }


def passed(row: dict) -> bool:
    """The export, tested in fp32 in one process, within 0.01 of the accuracy tested under the strategy
    (equal without mixed precision; bf16 compute under the strategy may flip a few borderline samples)."""
    exported = row.get("export_test_accuracy")
    return (
        row["ok"]
        and row.get("export_ok", False)
        and exported is not None
        and abs(exported - row["test_accuracy"]) <= 0.01
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny size on CPU, fp32; appends nothing")
    parser.add_argument("--only", nargs="+", choices=list(STRATEGIES), help="a subset of strategies")
    args = parser.parse_args()
    if args.cpu_smoke:
        device = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=1"]
    else:
        device = ["trainer.accelerator=gpu", "trainer.devices=1", "trainer.precision=bf16-mixed"]
    chosen = {name: STRATEGIES[name] for name in args.only or STRATEGIES}
    with tempfile.TemporaryDirectory() as scratch:
        rows = [check(name, overrides, device, Path(scratch)) for name, overrides in chosen.items()]
    print(json.dumps(rows, indent=2))
    if not args.cpu_smoke:
        import torch

        lines = [
            f"\n## GPU strategies ({time.strftime('%Y-%m-%d')}, {torch.cuda.get_device_name(0)})\n",
            "Command: `python benchmarks/gpu_strategies.py`.\n",
            "```json",
            json.dumps(rows, indent=2),
            "```",
        ]
        with Path(__file__).with_name("RESULTS.md").open("a") as handle:
            handle.write("\n".join(lines) + "\n")
    if not all(passed(row) for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
