"""A stock LightningModule and LightningDataModule (tests/user_project.py, tests/user_logged.py) under a sharded
strategy, one whose test_step logs its metrics instead of returning predictions, and Lightning's own demo
transformer, which has neither test_step nor validation_step (tests/user_transformer.py). (Under ddp_spawn the
first pair runs in tests/test_loggers.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import dsf, only_run_folder, results
from sklearn.datasets import load_digits


def labels(preds: np.ndarray) -> np.ndarray:
    """Class labels from saved predictions: class scores (one row per sample) or labels already."""
    return preds.argmax(-1) if preds.ndim == 2 else preds


USER_PAIR = [
    "--set",
    "model.module=user_project:DigitsLitModule",
    "--set",
    "data.datamodule=user_project:DigitsDataModule",
]


@pytest.mark.slow
@pytest.mark.distributed
def test_stock_module_under_fsdp_on_two_ranks(tmp_path):
    done = dsf(
        "run",
        *USER_PAIR,
        *["--set", "strategy.name=fsdp", "--set", "trainer.devices=2", "--set", "trainer.max_epochs=2"],
        *["--set", "trainer.enable_progress_bar=false", "--set", "run.name=sharded", "--output", "runs"],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "sharded"
    # Its steps call self.net(x), not self(x): sharded as its own unit, that submodule gathers its shards itself.
    assert yaml.safe_load((run / "config.yaml").read_text())["strategy"]["fsdp"]["wrap_modules"] == ["Sequential"]
    assert any(run.glob("checkpoints/last.ckpt/*.distcp"))
    test, existing = results(run, "test"), results(run, "eval")
    assert test["num_samples"] == existing["num_samples"] == 297  # every test sample once, over 2 ranks
    assert test["accuracy"] > 0.7
    report = json.loads((run / "results" / "comparison.json").read_text())
    # McNemar's counts, recomputed from the two models' saved per-sample predictions.
    trained, existing = (np.load(run / "results" / f"{side}_predictions.npz") for side in ("test", "eval"))
    assert trained["index"].tolist() == existing["index"].tolist() == list(range(297))
    right = [labels(side["preds"]) == side["target"] for side in (trained, existing)]
    mcnemar = report["statistics"]["mcnemar"]
    assert mcnemar["trained_only_correct"] == int(np.sum(right[0] & ~right[1]))
    assert mcnemar["existing_only_correct"] == int(np.sum(right[1] & ~right[0]))
    assert mcnemar["discordant"] == int(np.sum(right[0] != right[1])) and report["num_samples"] == 297


@pytest.mark.slow
def test_a_module_that_only_logs_its_metrics_is_compared_on_them(tmp_path):
    done = dsf(
        "run",
        *[
            "--set",
            "model.module=user_logged:LoggingDigitsModule",
            "--set",
            "data.datamodule=user_project:DigitsDataModule",
        ],
        *["--set", "existing_model.target=user_logged:constant_predictions", "--set", "trainer.max_epochs=2"],
        *["--set", "comparison.min_absolute={accuracy: 0.0}", "--set", "trainer.enable_progress_bar=false"],
        *["--set", "run.name=logged", "--output", "runs"],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "logged"
    test, existing = results(run, "test"), results(run, "eval")
    assert test["per_sample"] is False and set(test) == {"model", "accuracy", "per_sample"}
    assert not (run / "results" / "test_predictions.npz").exists()
    zeros = (load_digits().target[1500:] == 0).mean()  # the user's test split, and an existing model that says 0
    assert existing["accuracy"] == pytest.approx(zeros) and existing["num_samples"] == 297
    report = json.loads((run / "results" / "comparison.json").read_text())
    assert report["comparison"]["accuracy"] == {"trained": test["accuracy"], "eval": existing["accuracy"]}
    assert report["gates"]["passed"] and "statistics" not in report
    assert "No per-sample predictions" in report["notes"][0]


@pytest.mark.slow
@pytest.mark.distributed
def test_a_module_without_test_step_is_refused_by_run_and_trained_by_train(tmp_path):
    """`dsf run` would train, then fail to test: it refuses before the run folder exists. `dsf train` trains it
    under FSDP on 2 ranks; with no validation_step nothing is monitored, so the best checkpoint is the last."""
    demo = [
        *[
            "--set",
            "model.module=user_transformer:DemoTransformer",
            "--set",
            "data.datamodule=user_transformer:TokenStream",
        ],
        *["--set", "strategy.name=fsdp", "--set", "trainer.devices=2", "--set", "trainer.max_epochs=1"],
        *["--set", "trainer.enable_progress_bar=false", "--output", "runs"],
    ]
    refused = dsf("run", *demo, cwd=tmp_path)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-3000:]
    assert "model.module: DemoTransformer has no test_step" in lines[0] and "`dsf train`" in lines[0]
    assert not (tmp_path / "runs").exists()

    trained = dsf("train", *demo, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = only_run_folder(tmp_path / "runs")
    assert run.name.startswith("TokenStream-")  # named after the user's data, not the built-in digits
    assert trained.stderr.count("has no validation_step") == 1
    record = results(run, "train")
    assert record["monitor"] is None and record["best_score"] is None and record["global_step"] == 2
    best = Path(record["best_checkpoint"])
    assert best.name == "epoch000-step000002.ckpt" and any(best.glob("*.distcp"))  # the newest, sharded
