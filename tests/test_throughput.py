"""The throughput monitor on a real Lightning Trainer (CPU, one process): what it counts, and when it reads the
clock. The embedded default run's throughput.json is checked in test_pipeline.py."""

import json

import pytest
import pytorch_lightning as pl
import torch
from conftest import results
from pytorch_lightning.loggers import CSVLogger
from shared_runs import default_single_process_run
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dsf_dist.config.schema import ThroughputConfig
from dsf_dist.hooks.throughput import ThroughputMonitor, batch_size, token_count

SIZES = (8, 16, 4)  # MLP widths
TOKENS_PER_SAMPLE = 5  # of 7 positions; the rest is padding
STEP = 1  # metrics.csv's columns: epoch, step, then the metrics


class Tokens(Dataset):
    def __len__(self) -> int:
        return 256

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        mask = torch.zeros(7, dtype=torch.long)
        mask[:TOKENS_PER_SAMPLE] = 1
        return {"inputs": torch.randn(SIZES[0]), "attention_mask": mask, "target": torch.tensor(index % 4)}


class Mlp(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.ReLU(), nn.Linear(SIZES[1], SIZES[2]))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self.net(batch["inputs"]), batch["target"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def train(tmp_path, steps: int, **settings) -> tuple[dict, int, list[dict]]:
    """Fit `steps` steps with the monitor; its summary, how often it read the clock, and the logged rows."""
    monitor = ThroughputMonitor(ThroughputConfig(**settings), tmp_path / "throughput.json")
    reads = []
    now = monitor._now
    monitor._now = lambda trainer: reads.append(1) or now(trainer)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        callbacks=[monitor],
        logger=CSVLogger(tmp_path, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Mlp(), DataLoader(Tokens(), batch_size=8))
    csv = tmp_path / "metrics.csv"  # written only when something was logged
    rows = csv.read_text().splitlines() if csv.exists() else ["throughput/samples_per_s"]
    header = rows[0].split(",")
    logged = [row.split(",") for row in rows[1:] if row.split(",")[header.index("throughput/samples_per_s")]]
    assert not logged or header.index("step") == STEP
    return json.loads((tmp_path / "throughput.json").read_text()), len(reads), logged


def test_windows_flops_and_tokens_are_counted_exactly(tmp_path):
    summary, clock_reads, logged = train(tmp_path, steps=26, window_steps=5)
    # The first step is the FLOP count's; the 25 after it make 5 windows, each logged once.
    assert summary["windows"] == 5 and len(logged) == 5
    # Each window's row carries the 0-based index of the step that closed it, as Lightning's own rows do (its
    # epoch-end rows sit at the epoch's last index), so metrics.csv stays in step order.
    assert [int(row[STEP]) for row in logged] == [5, 10, 15, 20, 25]
    # The clock (and on a GPU the synchronisation) is read after the first step and at each window's end only.
    assert clock_reads == 1 + 5
    # torch's FLOP counter: forward 2·in·out per layer; backward twice that, but no input gradient for layer 1.
    first, second = SIZES[0] * SIZES[1], SIZES[1] * SIZES[2]
    assert summary["flops_per_sample"] == 2 * (first + second) + 2 * first + 4 * second
    assert summary["tokens_per_s"] == pytest.approx(TOKENS_PER_SAMPLE * summary["samples_per_s"])
    # Each window's rate is its 8-sample steps over its step time; the median of an odd number of windows is one
    # window's, so the two medians are of the same window and agree exactly (up to rounding).
    assert summary["samples_per_s"] == pytest.approx(8 * 1000 / summary["step_ms"], rel=1e-9)
    assert "mfu" not in summary  # no peak known for a CPU
    assert summary["first_step_after_process_start_s"] > 0


def test_mfu_against_a_configured_peak_and_given_flops(tmp_path):
    summary, _, _ = train(tmp_path, steps=11, window_steps=5, flops_per_sample=1e6, peak_tflops=0.5)
    assert summary["flops_per_sample"] == 1e6
    assert summary["tflops_per_device"] == pytest.approx(1e6 * summary["samples_per_s"] / 1e12)
    assert summary["mfu"] == pytest.approx(summary["tflops_per_device"] / 0.5)


def test_too_short_a_run_reports_no_window_and_does_not_fail(tmp_path):
    summary, _, logged = train(tmp_path, steps=3, window_steps=5)
    assert summary["windows"] == 0 and logged == []


def test_batch_sizes_and_token_counts_of_common_batch_shapes():
    images = torch.zeros(6, 3, 4, 4)
    assert batch_size((images, torch.zeros(6))) == 6
    assert batch_size({"input_ids": torch.zeros(3, 9), "labels": torch.zeros(3, 9)}) == 3
    assert token_count({"input_ids": torch.zeros(3, 9)}) == 27
    assert int(token_count({"input_ids": torch.zeros(2, 4), "attention_mask": torch.tensor([[1, 1, 0, 0]] * 2)})) == 4
    assert token_count((images, torch.zeros(6))) is None


@pytest.mark.slow
def test_the_default_run_reports_its_throughput(trained_run):
    run = default_single_process_run(trained_run)  # the README's `dsf run`, shared with tests/test_pipeline.py
    summary = results(run, "throughput")
    assert summary["world_size"] == 1 and summary["windows"] >= 1
    assert summary["samples_per_s"] > 0 and summary["flops_per_sample"] == 85760  # digits MLP 64-128-64-10
    assert "throughput/samples_per_s" in (run / "logs" / "metrics.csv").read_text().splitlines()[0]
