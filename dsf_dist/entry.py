"""What every entry point does around its work, written once: the `dsf` CLI and the Ray driver and worker share
it (DESIGN.md: only entry points turn errors into exit codes).

- exit codes, and a DsfError as one line on stderr;
- the known noise of Lightning and DeepSpeed kept out of the user's terminal;
- the --set and --resume arguments, and what they add to the config;
- a finished run (results/done.json) recognised, and the gate's exit code recorded there;
- the process group closed before the interpreter exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

from dsf_dist import files
from dsf_dist.run_folder import RunFolder

EXIT_FAILED = 1
EXIT_GATE_FAILED = 3  # the comparison ran, and the trained model failed a gate in config.comparison
EXIT_INTERRUPTED = 130

# Lightning warnings that say nothing to a dsf user: the test trainer leaves ModelCheckpoint out on
# purpose, and the pytree notice is Lightning's own deprecation. Set in the environment so that
# spawned and re-run workers inherit it.
QUIET_WARNINGS = [
    "ignore:Be aware that when using `ckpt_path`",
    "ignore:`isinstance(treespec",
    # On any machine with SLURM's client: dsf refuses the case it warns about (dsf_dist/launchers/slurm.py).
    "ignore:The `srun` command is available on your system but is not used",
]


# Log lines that say nothing to a dsf user, by logger: Lightning's tips and its census of accelerators ("GPU
# available: False, used: False", TPU, HPU; `dsf doctor` reports the devices, and Lightning still warns when a GPU
# is there but unused), and DeepSpeed's notice, on every import on a machine without GPUs, that it chose its CPU
# accelerator.
QUIET_LOG_LINES = {
    "pytorch_lightning.utilities.rank_zero": ("Tip:", "GPU available: ", "TPU available: ", "HPU available: "),
    "DeepSpeed": ("Setting accelerator to CPU",),
}


def quiet_known_noise() -> None:
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), *QUIET_WARNINGS]))
    for spec in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(spec.partition(":")[2]))
    for name, fragments in QUIET_LOG_LINES.items():
        logging.getLogger(name).addFilter(
            lambda record, fragments=fragments: not any(fragment in record.getMessage() for fragment in fragments)
        )


# -- arguments -------------------------------------------------------------------------------------------------
def add_set_argument(parser: argparse.ArgumentParser, example: str = "trainer.max_epochs=3") -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {example} (repeatable)",
    )


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run folder's last checkpoint if it has one (sets run.resume=auto)",
    )


def overrides(args: argparse.Namespace) -> list[str]:
    """The --set overrides, with run.resume=auto last when --resume was given."""
    return [*args.set, "run.resume=auto"] if getattr(args, "resume", False) else list(args.set)


# -- a run's end ----------------------------------------------------------------------------------------------
def gate_exit_code(report: dict[str, Any] | None) -> int:
    """0 without a comparison or when every gate passed, EXIT_GATE_FAILED otherwise."""
    if report is None:
        return 0
    return 0 if report.get("gates", {}).get("passed", True) else EXIT_GATE_FAILED


def record_finished(run: RunFolder, report: dict[str, Any] | None) -> int:
    """Rank zero, once the whole pipeline ran: results/done.json with the exit code; returns it."""
    code = gate_exit_code(report)
    files.write_json(run.done, {"exit_code": code})
    return code


def finished_exit_code(run: RunFolder, resume: str, announce: bool) -> int | None:
    """With run.resume=auto, a run whose pipeline already finished (results/done.json) is not run again, e.g. when
    SLURM restarts a job that had completed: its recorded exit code; None otherwise. No torch import."""
    if resume != "auto" or not run.done.is_file():
        return None
    if announce:
        print(f"run folder: {run.root} already finished ({run.done}); nothing to do")
    return int(files.read_json(run.done).get("exit_code", 0))


# -- errors ---------------------------------------------------------------------------------------------------
def run_reporting_errors(action: Callable[[], int]) -> int:
    """Run an entry point's work; turn what a user can fix into one stderr line and an exit code."""
    quiet_known_noise()
    from dsf_dist.errors import DsfError, Preempted

    try:
        return action()
    except Preempted as stop:  # checkpoint saved, job requeued if it could be: see dsf_dist/hooks/preemption.py
        if stop.message:
            print(f"dsf: {stop.message}", file=sys.stderr)
        return stop.exit_code
    except DsfError as err:
        print(f"dsf: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("dsf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as stop:
        # Lightning's trainer turns Ctrl-C during fit or test into exit(1) after its own shutdown: still Ctrl-C.
        if isinstance(stop.__context__, KeyboardInterrupt):
            print("dsf: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        raise
    except Exception as err:
        # Lightning reports user mistakes (e.g. a checkpoint.monitor no step logs) as MisconfigurationException.
        if type(err).__name__ != "MisconfigurationException":
            raise
        print(f"dsf: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        close_process_group()


def close_process_group() -> None:
    """Destroy the process group a verb left behind: DeepSpeed ZeRO-3 ranks abort at interpreter exit
    (SIGABRT, exit 134) when it is still alive (FACTS.md)."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    from dsf_dist.launchers.environment import process_group

    if process_group():
        dist.destroy_process_group()
