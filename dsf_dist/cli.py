"""`dsf`: one function per verb. Nothing heavy is imported before a verb runs, so `dsf --help` is instant.

Exit codes and one-line errors come from dsf_dist/entry.py, which the Ray driver shares.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dsf_dist import entry

if TYPE_CHECKING:
    from dsf_dist.run_folder import RunFolder


def cmd_run(args: argparse.Namespace) -> int:
    cfg, task = _new_config(args)
    finished = _finished_or_taken(cfg, args.verb)
    if finished is not None:
        return finished
    main = _new_run(args, cfg, task)
    report = main.execute()
    if not main.env.is_rank_zero:
        return 0
    code = entry.record_finished(main.run, report)
    if report is not None:
        from dsf_dist.comparison.render import print_comparison

        print_comparison(report)
    else:
        print(_not_compared(main.cfg))
    print(f"run folder: {main.run.root}")
    return code


def _finished_or_taken(cfg, verb: str) -> int | None:
    """Before torch is imported, on rank zero: under run.resume=auto, the recorded exit code of a run that already
    finished (entry.finished_exit_code); otherwise a run folder that exists is refused, naming the command that
    continues it."""
    from dsf_dist.errors import RunFolderError
    from dsf_dist.launchers.environment import resolve
    from dsf_dist.run_folder import RunFolder, name_run

    env = resolve()
    named = name_run(cfg, env)
    run = RunFolder(Path(named.run.output_root) / named.run.name)
    if cfg.run.resume == "auto":
        return entry.finished_exit_code(run, "auto", announce=env.is_rank_zero) if verb == "run" else None
    if env.is_rank_zero and run.root.exists():
        if run.config.is_file():
            how = f"continue it with `dsf {verb} -c {run.config} --resume`, or choose another run.name or --output"
        else:
            how = "choose another run.name or --output, or remove it"
        raise RunFolderError(f"{run.root}: run folder already exists; {how}")
    return None


def _not_compared(cfg) -> str:
    """Why a run or `dsf compare` printed no comparison."""
    if cfg.existing_model.kind == "none":
        return "no comparison: existing_model.kind is 'none', so there is no existing model to compare with"
    return "no comparison: comparison.enabled is false (--set comparison.enabled=true compares)"


def cmd_train(args: argparse.Namespace) -> int:
    cfg, task = _new_config(args)
    _finished_or_taken(cfg, args.verb)
    main = _new_run(args, cfg, task)
    best = main.execute_trainer()
    if main.env.is_rank_zero:
        print(f"best checkpoint: {best}\nrun folder: {main.run.root}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """With --checkpoint, the results go beside the run's own, as results/test-<checkpoint>.json and
    test-<checkpoint>_predictions.npz: the run's test.json and comparison stay those of its best checkpoint."""
    from dsf_dist.run_folder import RunFolder

    RunFolder(Path(args.run_dir)).require()
    _require_checkpoint(args.checkpoint)
    main = _existing_run(args)
    name = f"test-{_checkpoint_label(args.checkpoint)}" if args.checkpoint else "test"
    results = main.execute_test(args.checkpoint, name)
    _print_results(name, results)
    if results:
        print(f"results: {main.run.results / name}.json")
    return 0


def _require_checkpoint(path: str | None) -> None:
    from dsf_dist.errors import ConfigError

    if path is not None and not Path(path).exists():
        raise ConfigError(f"--checkpoint {path}: not found; give a checkpoint file or folder (RUN/checkpoints/...)")


def _checkpoint_label(path: str) -> str:
    """`last` for checkpoints/last.ckpt: a file-name-safe name for the results of a checkpoint."""
    name = Path(path).resolve().name.removesuffix(".ckpt").removesuffix(".safetensors")
    return re.sub(r"[^A-Za-z0-9._=-]", "_", name) or "checkpoint"


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
    from dsf_dist import files
    from dsf_dist.comparison.render import print_comparison
    from dsf_dist.errors import ConfigError, RunFolderError

    if args.out is not None:
        raise ConfigError("--out: only for `dsf compare A B`; a single run's comparison is written to its results/")
    run, cfg = _existing_config(args)
    results = run.results
    missing = [name for name in ("test.json", "eval.json") if not (results / name).is_file()]
    if missing:
        raise RunFolderError(f"{results}: {', '.join(missing)} missing; run `dsf test` and `dsf eval` on the run first")
    if not cfg.comparison.enabled:  # said before torch and Lightning load: nothing of the run's is needed
        print(_not_compared(cfg))
        return 0
    main = _main(cfg, run)
    report = main.compare(files.read_json(results / "test.json"), files.read_json(results / "eval.json"))
    if report is None:
        print(_not_compared(main.cfg))
        return 0
    print_comparison(report)
    print(f"reports: {results}")
    return entry.gate_exit_code(report)


def _compare_saved(args: argparse.Namespace) -> int:
    """`dsf compare A B`: A's saved test results as the trained model, B's as the existing one."""
    from dsf_dist.comparison.render import print_comparison, write_reports
    from dsf_dist.comparison.saved import SavedResults, compare_saved, saved_config
    from dsf_dist.errors import RunFolderError

    candidate, baseline = SavedResults.open(args.run_dir), SavedResults.open(args.baseline)
    cfg = saved_config(candidate, baseline, args.set)
    if not cfg.comparison.enabled:
        print(_not_compared(cfg))
        return 0
    report = compare_saved(candidate, baseline, cfg)
    out = Path(args.out) if args.out else candidate.results / f"compare-{baseline.name}"
    logs = [(candidate.name, candidate.training_log), (baseline.name, baseline.training_log)]
    try:
        write_reports(out, report, [(label, log) for label, log in logs if log is not None])
    except OSError as err:
        raise RunFolderError(f"{out}: cannot write the reports ({err.strerror}); choose a writable --out") from None
    print_comparison(report)
    print(f"reports: {out}")
    return entry.gate_exit_code(report)


def cmd_export(args: argparse.Namespace) -> int:
    from dsf_dist.errors import ConfigError, RunFolderError
    from dsf_dist.run_folder import RunFolder, best_checkpoint

    if args.set:
        raise ConfigError(f"--set {args.set[0]}: dsf export writes the run's own config.yaml, so it takes no --set")
    run = RunFolder(Path(args.run_dir)).require()
    source = args.checkpoint or best_checkpoint(run)
    _require_checkpoint(source)
    hf = args.format == "hf"
    out = Path(args.out) if args.out else run.root / "export" / ("hf" if hf else "")
    _require_writable_folder(out)
    if hf:
        target = _export_hf(run, source, out)
    else:
        from dsf_dist.checkpoints import export  # torch: only once the arguments are known good

    try:
        target = _export_hf(run, source, out) if hf else export(source, out, run.config.read_text())
    except OSError as err:
        raise RunFolderError(f"{out}: cannot write the export ({err.strerror}); choose a writable --out") from None
    print(f"exported {source} -> {target}")
    return 0


def _export_hf(run: RunFolder, source: str, out: Path) -> Path:
    """The task's Hugging Face form of the checkpoint, in RUN/export/hf/ (or --out): save_pretrained's folder."""
    from dsf_dist.config import load_config
    from dsf_dist.tasks import task_for

    cfg = load_config(run.config)
    task = task_for(cfg)
    task.run_root = run.root
    return task.export_pretrained(cfg, source, out)


def _require_writable_folder(folder: Path) -> None:
    """--out must be a folder, or a place one can be made, before anything is loaded."""
    from dsf_dist.errors import ConfigError

    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {folder}: {existing} is a file, not a folder; give a folder for the export")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {folder}: {existing} is not writable; choose a writable folder")


def cmd_config(args: argparse.Namespace) -> int:
    from dsf_dist.config import dump, load_config
    from dsf_dist.config.loader import check_strategy_devices
    from dsf_dist.tasks import task_for

    cfg = load_config(args.config, args.set, args.output)
    check_strategy_devices(cfg)
    task_for(cfg).check(cfg)
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


def cmd_init(args: argparse.Namespace) -> int:
    from dsf_dist.init import run

    return run(args.dir, args.task)


def _new_config(args: argparse.Namespace):
    from dsf_dist.config import load_config
    from dsf_dist.config.loader import check_strategy_devices
    from dsf_dist.launchers.registry import check_launch
    from dsf_dist.tasks import task_for

    cfg = load_config(args.config, entry.overrides(args), args.output)
    check_strategy_devices(cfg)
    check_launch(cfg.trainer, cfg.strategy.name)
    task = task_for(cfg)
    task.check(cfg)  # before Lightning loads; before torch too, but for sequence_classification (its folder checks)
    return cfg, task


def _new_run(args: argparse.Namespace, cfg, task):
    task.check_data(cfg)  # bad data is refused in seconds, before Lightning loads (about 6 s on 2 CPU cores)

    from dsf_dist.pipeline import Main  # torch and Lightning: only once the config and data are known good
    from dsf_dist.strategy import RERUN_LAUNCHED

    main = Main(cfg, task=task)
    if main.cfg.strategy.name in RERUN_LAUNCHED and main.env.launcher == "single":
        # Lightning's `ddp` starts ranks 1..N-1 by re-running this command line. Point them at the
        # resolved config (written by rank zero before fit), so every rank joins the same run.
        sys.argv[1:] = [args.verb, "--config", str(main.run.config)]
    return main


def _existing_run(args: argparse.Namespace):
    run, cfg = _existing_config(args)
    return _main(cfg, run)


def _existing_config(args: argparse.Namespace):
    """The run folder named on the command line and its config with the --set overrides, torch-free."""
    from dsf_dist.config import load_config
    from dsf_dist.run_folder import RunFolder

    run = RunFolder(Path(args.run_dir)).require()
    # compare reads saved results only: a run folder copied to another machine compares without the run's code,
    # data or devices there.
    return run, load_config(run.config, args.set, check_machine=args.verb != "compare")


def _main(cfg, run):
    from dsf_dist.tasks import task_for

    task = task_for(cfg)
    task.check(cfg)  # an existing model's folder, say: refused before Lightning loads, as Main would refuse it

    from dsf_dist.pipeline import Main  # torch and Lightning: only once the run and config are known good

    return Main(cfg, run_dir=run.root, task=task)


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
    "export": (
        cmd_export,
        "consolidate a checkpoint of any strategy into export/model.safetensors + config.yaml (--format hf: a "
        "Hugging Face folder in export/hf/)",
    ),
    "config": (cmd_config, "print the resolved config (--check: validate only)"),
    "doctor": (
        cmd_doctor,
        "what this machine has, and which strategies of the config can run here (exit 1: not its own)",
    ),
    "install-trainer-packages": (cmd_install, "pip install an extra: deepspeed, ray, hf, loggers or all (--dry-run)"),
    "init": (cmd_init, "write a project in the seed's shape to start from (main.py, data.py, model.py, config.yaml)"),
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
        elif verb == "init":
            sub.add_argument("dir", metavar="DIR", help="a new or empty folder for the project")
            # No argparse choices: an unknown task gets dsf's one-line refusal, not argparse's usage block.
            sub.add_argument(
                "--task",
                help="classification (the default), regression or token_classification; "
                "sequence_classification and causal_lm come with those tasks",
            )
            continue
        elif verb in ("test", "eval", "export"):
            sub.add_argument("run_dir", metavar="RUN", help="a run folder made by `dsf run` or `dsf train`")
        else:
            sub.add_argument("-c", "--config", help="YAML config (default: the embedded default)")
            sub.add_argument("--output", help="output root for run folders (sets run.output_root)")
        if verb == "export":  # refused in one line by cmd_export rather than by argparse's usage block
            sub.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
        else:
            entry.add_set_argument(sub)
        if verb in ("test", "export"):
            sub.add_argument("--checkpoint", help="checkpoint of any strategy (default: the run's best)")
        if verb == "export":
            sub.add_argument("--out", help="output folder (default: RUN/export, or RUN/export/hf with --format hf)")
            sub.add_argument(
                "--format",
                choices=("safetensors", "hf"),
                default="safetensors",
                help="safetensors: dsf's model.safetensors + config.yaml; hf: the task's Hugging Face folder "
                "(save_pretrained: config, model.safetensors, tokenizer), for from_pretrained",
            )
        if verb in ("run", "train"):
            entry.add_resume_argument(sub)
        if verb == "config":
            sub.add_argument("--check", action="store_true", help="validate only")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return entry.run_reporting_errors(lambda: VERBS[args.verb][0](args))


if __name__ == "__main__":
    sys.exit(main())
