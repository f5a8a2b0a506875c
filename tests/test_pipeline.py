"""The whole seed pipeline through the real CLI: fit, test the best checkpoint, eval, compare."""

import json

import numpy as np
import pytest
from conftest import REPO, copy_run, dsf, only_run_folder, results
from shared_runs import SPAWN_EXIT, ddp_spawn_run, default_single_process_run, reference_run

from dsf_dist.config import load_config
from dsf_dist.files import read_arrays

pytestmark = pytest.mark.slow

DIGITS_TEST_SIZE = 269  # 15% of 1,797: odd, so 2 ranks cannot split it evenly
USER_TEST_SIZE = 297  # tests/user_project.py's DigitsDataModule: odd too


@pytest.fixture
def default_run(trained_run):
    """`dsf run` exactly as the README's first command runs it (the session's shared run): the run folder and what
    the command printed."""
    run = default_single_process_run(trained_run)
    return run, trained_run.stdout(run)


def test_default_run_writes_the_run_folder(default_run):
    run, _ = default_run
    for name in (
        "config.yaml",
        "checkpoints/last.ckpt",
        "logs/metrics.csv",
        "results/train.json",
        "results/test.json",
        "results/eval.json",
        "results/comparison.json",
        "results/comparison.md",
    ):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml").run.name == run.name  # the file alone reproduces the run


def test_default_run_trains_a_good_model_and_a_real_comparison(default_run):
    run, stdout = default_run
    test, existing = results(run, "test"), results(run, "eval")
    assert test["accuracy"] >= 0.90
    assert existing["accuracy"] >= 0.90  # logistic regression on the same split
    for side in (test, existing):
        assert side["num_samples"] == DIGITS_TEST_SIZE
        assert np.array(side["confusion_matrix"]).sum() == DIGITS_TEST_SIZE
    comparison = results(run, "comparison")["comparison"]
    assert comparison["accuracy"] == {"trained": test["accuracy"], "eval": existing["accuracy"]}
    assert set(comparison) == {"accuracy", "precision", "recall", "f1", "confusion_matrix"}
    assert "trained vs existing model" in stdout and "existing model on accuracy" in stdout


@pytest.mark.distributed
def test_ddp_spawn_two_ranks_runs_the_pipeline_and_tests_exactly(trained_run, tmp_path):
    """The session's ddp_spawn run (tests/shared_runs.py: a stock LightningModule and LightningDataModule, whose
    297 test samples 2 ranks cannot split evenly either), tested again in one process on a copy."""
    run = copy_run(ddp_spawn_run(trained_run), tmp_path)  # dsf test writes into the run folder
    two_ranks = results(run, "test")
    two_rank_preds = read_arrays(run / "results" / "test_predictions.npz")
    assert two_ranks["num_samples"] == USER_TEST_SIZE and two_ranks["accuracy"] > 0.8
    assert two_rank_preds["index"].tolist() == list(range(USER_TEST_SIZE))
    assert results(run, "comparison")["comparison"]["accuracy"]["trained"] == two_ranks["accuracy"]

    # Test the same checkpoint in one process: every metric must be identical (DESIGN.md rule 2).
    done = dsf("test", str(run), "--set", "strategy.name=auto", "--set", "trainer.devices=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one_rank = results(run, "test")
    one_rank_preds = read_arrays(run / "results" / "test_predictions.npz")
    assert one_rank == two_ranks
    np.testing.assert_array_equal(one_rank_preds["target"], two_rank_preds["target"])
    np.testing.assert_allclose(one_rank_preds["preds"], two_rank_preds["preds"], atol=1e-5)


@pytest.mark.distributed
def test_ddp_spawn_ranks_close_their_process_group_before_they_exit(trained_run):
    """Each rank fit spawned wrote, as it exited, whether its gloo group was still open (tests/spawn_exit.py): one
    left open can abort the rank at interpreter exit, after its phase went well."""
    run = ddp_spawn_run(trained_run)  # the session's shared ddp_spawn run: read, never written
    at_exit = [json.loads((run.parent / f"{SPAWN_EXIT}-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert at_exit == [{"rank": 0, "open": False}, {"rank": 1, "open": False}]


@pytest.mark.distributed
def test_ddp_two_ranks_share_one_run_folder(trained_run):
    """Both ranks of a `dsf run` without run.name agree on the name dsf gives it: one run folder."""
    run = reference_run(trained_run, "ddp")  # the session's shared 2-rank DDP run (tests/shared_runs.py)
    assert only_run_folder(run.parent) == run and run.name.startswith("digits-")
    assert results(run, "test")["num_samples"] == DIGITS_TEST_SIZE
    assert (run / "results" / "comparison.json").is_file()


def test_autoencoder_regression_against_pca(tmp_path):
    done = dsf(
        "run",
        "-c",
        str(REPO / "configs" / "autoencoder.yaml"),
        "--output",
        "runs",
        "--set",
        "trainer.max_epochs=3",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    comparison = results(only_run_folder(tmp_path / "runs"), "comparison")
    assert set(comparison["comparison"]) == {"mse", "mae"}
    assert comparison["primary_metric"] == "mse"
    assert 0 < comparison["comparison"]["mse"]["eval"] < 0.1


def test_existing_checkpoint_scores_like_testing_it(tmp_path, monkeypatch):
    """The seed's Python API; an existing checkpoint evaluated == that checkpoint tested."""
    from dsf_dist import Main

    monkeypatch.chdir(tmp_path)
    quick = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    first = Main(load_config(overrides=[*quick, "run.name=first"]))
    first.execute_trainer()
    last = first.run.checkpoints / "last.ckpt"
    first_test = first.execute_test(str(last))

    second = Main(
        load_config(
            overrides=[*quick, "run.name=second", "existing_model.kind=checkpoint", f"existing_model.path={last}"]
        )
    )
    report = second.execute()
    existing = results(second.run.root, "eval")
    assert existing["accuracy"] == first_test["accuracy"]
    assert existing["confusion_matrix"] == first_test["confusion_matrix"]
    assert report["existing_model"].endswith("last.ckpt")

    # kind: previous takes an earlier run's best checkpoint, tested or not.
    third = Main(
        load_config(
            overrides=[
                *quick,
                "run.name=third",
                "existing_model.kind=previous",
                f"existing_model.path={first.run.root}",
            ]
        )
    )
    third.execute_trainer()
    previous = third.execute_eval()
    first_best = first.execute_test()
    assert previous == {**first_best, "model": str(first.run.root)}

    # kind: pretrained takes a model folder (what `dsf export` writes) in its own architecture.
    from dsf_dist.checkpoints import export

    folder = tmp_path / "pretrained"
    export(first.run.root / first_best["model"], folder, first.run.config.read_text())
    fourth = Main(
        load_config(
            overrides=[
                *quick,
                "run.name=fourth",
                "model.network_kwargs.hidden_sizes=[32]",
                "existing_model.kind=pretrained",
                f"existing_model.path={folder}",
            ]
        )
    )
    fourth.execute_trainer()
    assert fourth.execute_eval() == {**first_best, "model": str(folder)}


def test_users_own_lightning_module_and_datamodule(tmp_path):
    done = dsf(
        "run",
        "--output",
        "runs",
        "--set",
        "model.module=user_project:DigitsLitModule",
        "--set",
        "model.module_kwargs={hidden: 32}",
        "--set",
        "data.datamodule=user_project:DigitsDataModule",
        "--set",
        "trainer.max_epochs=3",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = only_run_folder(tmp_path / "runs")
    test, existing = results(run, "test"), results(run, "eval")
    assert test["num_samples"] == existing["num_samples"] == 297  # the user's own test split
    assert np.array(test["confusion_matrix"]).shape == (10, 10)
    assert test["accuracy"] > 0.8 and existing["accuracy"] > 0.8
