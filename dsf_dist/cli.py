"""`dsf`: one function per verb. Nothing heavy is imported before a verb runs, so `dsf --help` is instant.

Exit codes and one-line errors come from dsf_dist/entry.py, which the Ray driver shares.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dsf_dist import entry


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _new_config(args)
    finished = _finished_run(cfg)
    if finished is not None:
        return finished
    main = _new_run(args, cfg)
    report = main.execute()
    if not main.env.is_rank_zero:
        return 0
    code = entry.record_finished(main.run, report)
    if report is not None:  # None: no existing model, or the comparison disabled
        from dsf_dist.comparison.render import print_comparison

        print_comparison(report)
    print(f"run folder: {main.run.root}")
    return code


def _finished_run(cfg) -> int | None:
    """The recorded exit code of a run that already finished under run.resume=auto (entry.finished_exit_code)."""
    if cfg.run.resume != "auto":
        return None
    from dsf_dist.launchers.environment import resolve
    from dsf_dist.run_folder import RunFolder, name_run

    env = resolve()
    named = name_run(cfg, env)
    run = RunFolder(Path(named.run.output_root) / named.run.name)
    return entry.finished_exit_code(run, named.run.resume, announce=env.is_rank_zero)


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
    from dsf_dist import files
    from dsf_dist.comparison.render import print_comparison
    from dsf_dist.errors import ConfigError, RunFolderError

    if args.out is not None:
        raise ConfigError("--out: only for `dsf compare A B`; a single run's comparison is written to its results/")
    main = _existing_run(args)
    results = main.run.results
    missing = [name for name in ("test.json", "eval.json") if not (results / name).is_file()]
    if missing:
        raise RunFolderError(f"{results}: {', '.join(missing)} missing; run `dsf test` and `dsf eval` on the run first")
    report = main.compare(files.read_json(results / "test.json"), files.read_json(results / "eval.json"))
    if report is None:
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
    report = compare_saved(candidate, baseline, saved_config(candidate, baseline, args.set))
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
    from dsf_dist.checkpoints import export
    from dsf_dist.run_folder import RunFolder, best_checkpoint

    run = RunFolder(Path(args.run_dir)).require()
    source = args.checkpoint or best_checkpoint(run)
    if args.format == "hf":
        target = _export_hf(args, run, source)
    else:
        target = export(source, Path(args.out) if args.out else run.root / "export", run.config.read_text())
    print(f"exported {source} -> {target}")
    return 0


def _export_hf(args: argparse.Namespace, run, source: str) -> Path:
    """The task's Hugging Face form of the checkpoint, in RUN/export/hf/ (or --out): save_pretrained's folder."""
    from dsf_dist.config import load_config
    from dsf_dist.tasks import task_for

    cfg = load_config(run.config, args.set)
    task = task_for(cfg)
    task.run_root = run.root
    return task.export_pretrained(cfg, source, Path(args.out) if args.out else run.root / "export" / "hf")


def cmd_config(args: argparse.Namespace) -> int:
    from dsf_dist.config import dump, load_config
    from dsf_dist.tasks import task_for

    cfg = load_config(args.config, args.set, args.output)
    task_for(cfg).check_config(cfg)
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
    from dsf_dist.launchers.registry import check_launch

    cfg = load_config(args.config, entry.overrides(args), args.output)
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
