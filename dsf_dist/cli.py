"""`dsf`: one function per verb. Nothing heavy is imported before a verb runs, so `dsf --help` is instant.

The CLI is the only place that turns DsfError into an exit code (2 for config and run-folder errors).
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_FAILED = 1
EXIT_GATE_FAILED = 3  # the comparison ran, and the trained model failed a gate in config.comparison

# Lightning warnings that say nothing to a dsf user: the test trainer leaves ModelCheckpoint out on
# purpose, and the pytree notice is Lightning's own deprecation. Set in the environment so that
# spawned and re-run workers inherit it.
QUIET_WARNINGS = [
    "ignore:Be aware that when using `ckpt_path`",
    "ignore:`isinstance(treespec",
    # On any machine with SLURM's client: dsf refuses the case it warns about (dsf_dist/launch/slurm.py).
    "ignore:The `srun` command is available on your system but is not used",
]


def quiet_known_noise() -> None:
    import logging
    import os

    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), *QUIET_WARNINGS]))
    for spec in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(spec.partition(":")[2]))
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "Tip:" not in record.getMessage()
    )


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _new_config(args)
    finished = _finished_run(cfg)
    if finished is not None:
        return finished
    main = _new_run(args, cfg)
    report = main.execute()
    code = 0 if report is None else _gate_exit_code(report)
    if main.env.is_rank_zero:
        from dsf_dist import io

        io.write_json(main.run.done, {"exit_code": code})
    if report is None:  # not rank zero, no existing model, or comparison disabled
        return 0
    from dsf_dist.reports import print_comparison

    print_comparison(report)
    print(f"run folder: {main.run.root}")
    return code


def _finished_run(cfg) -> int | None:
    """With run.resume=auto, a run whose pipeline already finished (results/done.json) is not run again, e.g.
    when SLURM restarts a job that had completed: its recorded exit code; None otherwise. No torch import."""
    if cfg.run.resume != "auto":
        return None
    from dsf_dist import io
    from dsf_dist.launch.environment import resolve
    from dsf_dist.run_folder import RunFolder, name_run

    env = resolve()
    named = name_run(cfg, env)
    run = RunFolder(Path(named.run.output_root) / named.run.name)
    if not run.done.is_file():
        return None
    if env.is_rank_zero:
        print(f"run folder: {run.root} already finished ({run.done}); nothing to do")
    return int(io.read_json(run.done).get("exit_code", 0))


def cmd_train(args: argparse.Namespace) -> int:
    main = _new_run(args, _new_config(args))
    best = main.execute_trainer()
    if main.env.is_rank_zero:
        print(f"best checkpoint: {best}\nrun folder: {main.run.root}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    main = _existing_run(args)
    _print_results("test", main.execute_test(args.checkpoint))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    main = _existing_run(args)
    results = main.execute_eval()
    if results is None:
        print("existing_model.kind is 'none': nothing to evaluate")
        return 0
    _print_results("eval", results)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if args.baseline is not None:
        return _compare_saved(args)
    from dsf_dist import io
    from dsf_dist.errors import ConfigError, RunFolderError
    from dsf_dist.reports import print_comparison

    if args.out is not None:
        raise ConfigError("--out: only for `dsf compare A B`; a single run's comparison is written to its results/")
    main = _existing_run(args)
    results = main.run.results
    missing = [name for name in ("test.json", "eval.json") if not (results / name).is_file()]
    if missing:
        raise RunFolderError(f"{results}: {', '.join(missing)} missing; run `dsf test` and `dsf eval` on the run first")
    report = main.compare(io.read_json(results / "test.json"), io.read_json(results / "eval.json"))
    if report is None:
        return 0
    print_comparison(report)
    print(f"reports: {results}")
    return _gate_exit_code(report)


def _compare_saved(args: argparse.Namespace) -> int:
    """`dsf compare A B`: A's saved test results as the trained model, B's as the existing one."""
    from dsf_dist.compare import SavedResults, compare_saved, saved_config
    from dsf_dist.errors import RunFolderError
    from dsf_dist.reports import print_comparison, write_reports

    candidate, baseline = SavedResults.open(args.run_dir), SavedResults.open(args.baseline)
    report = compare_saved(candidate, baseline, saved_config(candidate, baseline, args.set))
    out = Path(args.out) if args.out else candidate.results / f"compare-{baseline.name}"
    logs = [(candidate.name, candidate.training_log), (baseline.name, baseline.training_log)]
    try:
        write_reports(out, report, [(label, log) for label, log in logs if log is not None])
    except OSError as err:
        raise RunFolderError(f"{out}: cannot write the reports ({err.strerror}); choose a writable --out") from None
    print_comparison(report)
    print(f"reports: {out}")
    return _gate_exit_code(report)


def _gate_exit_code(report: dict) -> int:
    return 0 if report.get("gates", {}).get("passed", True) else EXIT_GATE_FAILED


def cmd_export(args: argparse.Namespace) -> int:
    from dsf_dist.checkpoints import export
    from dsf_dist.run_folder import RunFolder, best_checkpoint

    run = RunFolder(Path(args.run_dir)).require()
    source = args.checkpoint or best_checkpoint(run)
    target = export(source, Path(args.out) if args.out else run.root / "export", run.config.read_text())
    print(f"exported {source} -> {target}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from dsf_dist.config import dump, load_config

    cfg = load_config(args.config, args.set, args.output)
    print(
        f"config OK: {args.config or 'embedded default'}" if args.check else dump(cfg), end="\n" if args.check else ""
    )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from dsf_dist.config import load_config
    from dsf_dist.doctor import report

    # Validated, but not checked against this machine: reporting what this machine lacks is the doctor's job.
    cfg = load_config(args.config, args.set, args.output, check_machine=False)
    return report(cfg, args.config or "the embedded default")


def cmd_install(args: argparse.Namespace) -> int:
    from dsf_dist.install import install

    return install(args.extra, args.dry_run)


def _new_config(args: argparse.Namespace):
    from dsf_dist.config import load_config
    from dsf_dist.launch.checks import check_launch

    overrides = [*args.set, "run.resume=auto"] if args.resume else args.set
    cfg = load_config(args.config, overrides, args.output)
    check_launch(cfg.trainer, cfg.strategy.name)
    return cfg


def _new_run(args: argparse.Namespace, cfg):
    from dsf_dist.pipeline import Main  # torch and Lightning: only once the config is known good
    from dsf_dist.strategy import RERUN_LAUNCHED

    main = Main(cfg)
    if main.cfg.strategy.name in RERUN_LAUNCHED and main.env.launcher == "single":
        # Lightning's `ddp` starts ranks 1..N-1 by re-running this command line. Point them at the
        # resolved config (written by rank zero before fit), so every rank joins the same run.
        sys.argv[1:] = [args.verb, "--config", str(main.run.config)]
    return main


def _existing_run(args: argparse.Namespace):
    from dsf_dist.config import load_config
    from dsf_dist.run_folder import RunFolder

    run = RunFolder(Path(args.run_dir)).require()
    cfg = load_config(run.config, args.set)
    from dsf_dist.pipeline import Main  # torch and Lightning: only once the run and config are known good

    return Main(cfg, run_dir=run.root)


def _print_results(name: str, results: dict) -> None:
    if not results:  # not rank zero
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name} results")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        if key != "confusion_matrix":
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


VERBS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "run": (cmd_run, "train, test the best checkpoint, evaluate the existing model, compare"),
    "train": (cmd_train, "train only; writes checkpoints and results/train.json"),
    "test": (cmd_test, "test a run's best checkpoint (or --checkpoint) on its test split"),
    "eval": (cmd_eval, "evaluate the existing model on a run's test split"),
    "compare": (cmd_compare, "compare a run's test and eval results, or two saved runs (exit 3: a gate failed)"),
    "export": (cmd_export, "consolidate a checkpoint of any strategy into export/model.safetensors + config.yaml"),
    "config": (cmd_config, "print the resolved config (--check: validate only)"),
    "doctor": (
        cmd_doctor,
        "what this machine has, and which strategies of the config can run here (exit 1: not its own)",
    ),
    "install-trainer-packages": (cmd_install, "pip install an extra: deepspeed, ray, hf, loggers or all (--dry-run)"),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dsf", description="dsf-dist: distributed training from one YAML file.")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (_, summary) in VERBS.items():
        sub = verbs.add_parser(verb, help=summary, description=summary)
        if verb == "compare":
            sub.add_argument(
                "run_dir", metavar="A", help="a run folder (with B: or a results folder), the trained model"
            )
            sub.add_argument(
                "baseline",
                metavar="B",
                nargs="?",
                help="a run or results folder whose test results are the existing model; without B, A's run "
                "compares its own test and eval results",
            )
            sub.add_argument("--out", help="with B: folder for the reports (default: A's results/compare-<B's name>/)")
        elif verb == "install-trainer-packages":
            # No argparse choices: an unknown extra gets dsf's one-line refusal, not argparse's usage block.
            sub.add_argument("extra", metavar="EXTRA", help="deepspeed, ray, hf, loggers or all")
            sub.add_argument("--dry-run", action="store_true", help="print the pip command only")
            continue
        elif verb in ("test", "eval", "export"):
            sub.add_argument("run_dir", metavar="RUN", help="a run folder made by `dsf run` or `dsf train`")
        else:
            sub.add_argument("-c", "--config", help="YAML config (default: the embedded default)")
            sub.add_argument("--output", help="output root for run folders (sets run.output_root)")
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set trainer.max_epochs=3 (repeatable)",
        )
        if verb in ("test", "export"):
            sub.add_argument("--checkpoint", help="checkpoint of any strategy (default: the run's best)")
        if verb == "export":
            sub.add_argument("--out", help="output folder (default: RUN/export)")
        if verb in ("run", "train"):
            sub.add_argument(
                "--resume",
                action="store_true",
                help="continue the run folder's last checkpoint if it has one (sets run.resume=auto)",
            )
        if verb == "config":
            sub.add_argument("--check", action="store_true", help="validate only")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_reporting_errors(lambda: VERBS[args.verb][0](args))


def run_reporting_errors(action: Callable[[], int]) -> int:
    """Run an entry point's work; turn what a user can fix into one stderr line and an exit code.
    Shared by `dsf` and the Ray driver (dsf_dist/launchers/ray.py)."""
    quiet_known_noise()
    from dsf_dist.errors import DsfError
    from dsf_dist.launch.requeue import Preempted

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
        return 130
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

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
