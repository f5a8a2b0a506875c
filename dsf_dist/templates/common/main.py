"""This project's entry point: the seed tutorial's four calls. Train, test the best checkpoint, evaluate the existing
model on the same test samples, compare the two.

    python main.py              # in this process (run it from this folder: paths in config.yaml start here)
    dsf run -c config.yaml      # the same pipeline from dsf's CLI, and the way to the launchers (README.md)

What each call does comes from dsf-dist; what it runs on is yours: data.py, model.py and config.yaml.
"""

from dsf_dist import Comparison, Main
from dsf_dist.comparison.render import print_comparison
from dsf_dist.entry import gate_exit_code, run_reporting_errors

CONFIG = "config.yaml"


def run() -> int:
    main = Main(CONFIG)  # the seed's Main(cfg, dataset_path=..., test_dataset_path=...) works too
    best = main.execute_trainer()  # fit; returns the best checkpoint (checkpoint.monitor in config.yaml)
    test_results = main.execute_test(model_path=best)  # the trained model on the test split: results/test.json
    eval_results = main.execute_eval()  # the existing model on the same samples: results/eval.json
    comparison_results = Comparison(test_results, eval_results, main.cfg.metrics).compare()
    # The same comparison with paired statistics and the gates of config.yaml's comparison section, written to
    # results/comparison.json, comparison.md, comparison.html and its plots.
    report = main.compare(test_results, eval_results)
    if not main.env.is_rank_zero:  # with several processes, rank zero alone reports
        return 0
    print(comparison_results)  # the seed's dictionary: {metric: {"trained": ..., "eval": ...}}
    if report is not None:
        print_comparison(report)
    print(f"run folder: {main.run.root}")
    return gate_exit_code(report)  # 3 when the trained model failed a gate, as `dsf run` exits


if __name__ == "__main__":  # the guard ddp_spawn needs: its processes import this file
    # One line for a mistake dsf can name (a bad config key, a missing file) instead of a traceback.
    raise SystemExit(run_reporting_errors(run))
