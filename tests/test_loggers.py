"""CSV, TensorBoard and MLflow from `logging.loggers`: one 2-rank ddp_spawn job (the session's shared one, which
tests/test_pipeline.py reads too) writes exactly one run in each,
holding the resolved config and, after the comparison, its results. The job trains a stock LightningModule and
LightningDataModule (tests/user_project.py), so it also checks that contract under ddp_spawn."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from shared_runs import ddp_spawn_run

from dsf_dist.config import load_config
from dsf_dist.errors import ConfigError


@pytest.fixture
def logged_run(trained_run) -> Path:
    return ddp_spawn_run(trained_run)  # the session's shared one (tests/shared_runs.py): read, never written


def test_a_logger_listed_twice_is_refused():
    with pytest.raises(ConfigError, match="a logger is listed twice"):
        load_config(overrides=["logging.loggers=[csv, csv]"])


@pytest.mark.slow
@pytest.mark.distributed
def test_mlflow_holds_one_run_with_config_and_comparison(logged_run, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when told to
    record = json.loads((logged_run / "logs" / "mlflow.json").read_text())
    assert record["tracking_uri"] == (logged_run / "mlruns").as_uri()  # local file store inside the run folder
    client = MlflowClient(record["tracking_uri"])
    experiments = [e for e in client.search_experiments() if e.name == "dsf"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert [run.info.run_id for run in runs] == [record["run_id"]]  # one run for two ranks
    run = runs[0]
    assert run.data.params["model.module"] == "user_project:DigitsLitModule"
    assert run.data.params["trainer.devices"] == "2"
    assert "val_loss" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"config.yaml", "comparison"}
    names = {a.path for a in client.list_artifacts(run.info.run_id, "comparison")}
    assert names == {f"comparison/{n}" for n in ("comparison.json", "comparison.md", "test.json", "eval.json")}
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert Path(local).read_text() == (logged_run / "config.yaml").read_text()
    report = json.loads((logged_run / "results" / "comparison.json").read_text())
    accuracy = report["comparison"]["accuracy"]
    assert run.data.metrics["comparison/trained_accuracy"] == pytest.approx(accuracy["trained"])
    assert run.data.metrics["comparison/existing_accuracy"] == pytest.approx(accuracy["eval"])


@pytest.mark.slow
@pytest.mark.distributed
def test_tensorboard_holds_one_run_with_config_and_comparison(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(logged_run))
    multiplexer.Reload()
    assert list(multiplexer.Runs()) == ["logs/tensorboard"]
    tags = multiplexer.Runs()["logs/tensorboard"]
    assert "val_loss" in tags["scalars"]
    texts = {tag.split("/")[0] for tag in tags["tensors"]}
    assert {"config", "comparison"} <= texts
    config = multiplexer.Tensors("logs/tensorboard", "config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert yaml.safe_load(config.strip("`\n"))["trainer"]["devices"] == 2
    # One writer of the training run: a directory counts two writers as one, so read each event file alone. Rank
    # zero's fit writes one file; the comparison, added after test by the launching process, another.
    writers = {}
    for events in sorted((logged_run / "logs" / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        writers[events.name] = accumulator
    training = [name for name, tags in writers.items() if "val_loss" in tags.Tags()["scalars"]]
    assert len(training) == 1 and len(writers) == 2, sorted(writers)
    assert len(writers[training[0]].Scalars("val_loss")) == 2  # one per epoch, written once


@pytest.mark.slow
@pytest.mark.distributed
def test_csv_is_one_file_with_every_epoch(logged_run):
    assert sorted(p.name for p in (logged_run / "logs").glob("*.csv")) == ["metrics.csv"]
    with open(logged_run / "logs" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    # Every epoch's validation row exactly once: a second rank writing would repeat them.
    assert [row["epoch"] for row in rows if row.get("val_loss")] == ["0", "1"]
    assert [path.name for path in (logged_run / "logs").iterdir() if path.name.startswith("version_")] == []


@pytest.mark.slow
@pytest.mark.distributed
def test_stock_lightning_module_is_tested_exactly_under_ddp_spawn(logged_run):
    """297 test samples split over 2 ranks (one padded by the sampler): each counted once, as in one process."""
    test = json.loads((logged_run / "results" / "test.json").read_text())
    existing = json.loads((logged_run / "results" / "eval.json").read_text())
    assert test["num_samples"] == existing["num_samples"] == 297
    assert test["accuracy"] > 0.8
