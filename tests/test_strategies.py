"""The strategy layer: config -> Strategy, checks before launch, and for each of ddp, fsdp and deepspeed
(stages 2 and 3) on 2 real CPU ranks: fit, checkpoint, export, test at world size 1; ZeRO-2's resume (bit-exact)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, copy_run, dsf, results, sets
from safetensors.torch import load_file
from shared_runs import EPOCHS, STRATEGIES, TWO_RANKS, ZERO3_TRACE, assert_same_tensors, optimizer_state, reference_run

from dsf_dist.checkpoints import checkpoint_format, load_weights
from dsf_dist.config import load_config
from dsf_dist.strategy import build_strategy


def strategy_for(*overrides: str, gpu: bool = False):
    cfg = load_config(overrides=overrides)
    trainer = {**cfg.trainer, "accelerator": "gpu" if gpu else "cpu"}
    return build_strategy(cfg.strategy, trainer)


def test_ddp_options_reach_the_strategy():
    strategy = strategy_for(
        "strategy.name=ddp", "strategy.ddp.static_graph=true", "strategy.ddp.bucket_cap_mb=50", "strategy.timeout_s=30"
    )
    assert strategy._ddp_kwargs == {
        "find_unused_parameters": False,
        "static_graph": True,
        "gradient_as_bucket_view": False,
        "bucket_cap_mb": 50.0,
    }
    assert strategy._timeout.total_seconds() == 30


def test_fsdp_on_cpu_is_fsdp2_and_on_gpu_lightnings_fsdp():
    from pytorch_lightning.strategies import FSDPStrategy

    from dsf_dist.strategy.fsdp import FSDP2Strategy

    cpu = strategy_for("strategy.name=fsdp", "strategy.fsdp.state_dict=full")
    assert isinstance(cpu, FSDP2Strategy) and cpu._save_distributed_checkpoint is False
    gpu = strategy_for(
        "strategy.name=fsdp",
        "strategy.fsdp.sharding=grad_op",
        "strategy.fsdp.cpu_offload=true",
        "strategy.fsdp.mixed_precision=bf16",
        gpu=True,
    )
    assert isinstance(gpu, FSDPStrategy)
    assert gpu.sharding_strategy.name == "SHARD_GRAD_OP" and gpu.cpu_offload.offload_params
    assert gpu.mixed_precision.param_dtype == torch.bfloat16


def test_deepspeed_options_and_passthrough_config(tmp_path):
    from dsf_dist.strategy.deepspeed import CPUDeepSpeedStrategy

    extra = tmp_path / "ds.yaml"
    extra.write_text("zero_optimization:\n  overlap_comm: false\ngradient_clipping: 1.0\n")
    strategy = strategy_for(
        "strategy.name=deepspeed",
        "strategy.deepspeed.stage=3",
        "strategy.deepspeed.offload_optimizer=cpu",
        f"strategy.deepspeed.config={extra}",
    )
    assert isinstance(strategy, CPUDeepSpeedStrategy)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu"
    assert zero["overlap_comm"] is False and strategy.config["gradient_clipping"] == 1.0  # the file wins
    assert os.environ["DS_ACCELERATOR"] == "cpu"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.precision=16-mixed"], "trainer.precision: '16-mixed' needs a GPU"),
        (["trainer.devices=4096"], "trainer.devices: 4096 asked but this machine has"),
        (
            ["strategy.deepspeed.offload_optimizer=cpu"],
            "strategy: deepspeed.offload_optimizer is set but strategy.name is 'auto'",
        ),
        (["strategy.name=ddp", "strategy.fsdp.cpu_offload=true"], "fsdp.cpu_offload is set but strategy.name is 'ddp'"),
        (["strategy.name=deepspeed", "strategy.deepspeed.offload_parameters=cpu"], "offload_parameters needs stage 3"),
        (
            ["strategy.name=fsdp", "strategy.fsdp.mixed_precision=fp16"],
            "strategy.fsdp.mixed_precision: fp16 needs a GPU",
        ),
        (
            ["strategy.name=fsdp", "strategy.fsdp.wrap_modules=[TransformerBlock]"],
            "strategy.fsdp.wrap_modules: 'TransformerBlock' is not a module class in the model",
        ),
    ],
    ids=[
        "fp16-on-cpu",
        "too-many-devices",
        "offload-without-deepspeed",
        "fsdp-offload-under-ddp",
        "param-offload-stage2",
        "fsdp-fp16-on-cpu",
        "wrap-class-not-in-model",
    ],
)
def test_impossible_combinations_exit_2_before_any_worker(tmp_path, overrides, expected):
    args = [arg for item in overrides for arg in ("--set", item)]
    done = dsf("run", "--output", "out", *args, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and expected in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


def test_deepspeed_not_installed_names_the_extra(tmp_path):
    """Run the CLI against a copy of site-packages without deepspeed: the real 'not installed' case."""
    site = Path(torch.__file__).parents[1]
    hidden = tmp_path / "site"
    hidden.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith("deepspeed"):
            (hidden / entry.name).symlink_to(entry)
    code = (
        f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(hidden)!r}]; from dsf_dist.cli import main; "
        "sys.exit(main(['config', '--check', '--set', 'strategy.name=deepspeed']))"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "dsf: error: strategy.name: deepspeed is not installed; pip install 'dsf-dist[deepspeed]'"
    )


FORMATS = {"ddp": "lightning", "fsdp": "distcp", "deepspeed2": "deepspeed", "deepspeed3": "deepspeed"}


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_fit_checkpoint_and_test_on_two_ranks(trained_run, name):
    """The uninterrupted run: the whole pipeline under the strategy. Its resumes are tested where they stop mid-way:
    ddp and fsdp in test_chaos (killed mid-step, mid-checkpoint, mid-test; weights and optimizer state bit for
    bit), ZeRO-3 in test_resume (a mid-epoch stop, the same two), ZeRO-2 below (at an epoch's end)."""
    whole = reference_run(trained_run, name)
    tested = results(whole, "test")
    assert tested["num_samples"] == 269 and tested["accuracy"] > 0.7
    assert checkpoint_format(whole / "checkpoints" / "last.ckpt") == FORMATS[name]
    # No C++ op was compiled or loaded: DeepSpeed on CPU skips its shared-memory op (dsf_dist/strategy/deepspeed.py).
    assert "deepspeed_shm_comm" not in trained_run.stdout(whole)
    if name == "deepspeed3":  # ZeRO-3 prefetched along a whole trace (tests/zero3_trace.py) on every rank, in every
        # step but each epoch's first (validation's forward-only pass ends the trace; a step records it again)
        traces = [json.loads((whole.parent / f"{ZERO3_TRACE}-rank{r}.json").read_text()) for r in (0, 1)]
        assert [trace["complete"] for trace in traces] == [[step % 10 > 0 for step in range(EPOCHS * 10)]] * 2


@pytest.mark.slow
@pytest.mark.distributed
def test_zero2_stopped_after_an_epoch_resumes_bit_identical(tmp_path, trained_run):
    """1 epoch, stop, resume to 2: the same weights and optimizer state as the uninterrupted run, bit for bit."""
    whole = reference_run(trained_run, "deepspeed2")
    common = sets(*STRATEGIES["deepspeed2"], *TWO_RANKS)
    done = dsf("train", "--output", "runs", *common, *sets("run.name=split", "trainer.max_epochs=1"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    split = tmp_path / "runs" / "split"
    resume = ["-c", str(split / "config.yaml"), "--resume", *sets(f"trainer.max_epochs={EPOCHS}")]
    done = dsf("train", *resume, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = results(split, "train")
    assert (
        record["resumed_from"].endswith("last.ckpt") and record["global_step"] == results(whole, "train")["global_step"]
    )
    resumed, reference = split / "checkpoints" / "last.ckpt", whole / "checkpoints" / "last.ckpt"
    assert_same_tensors(load_weights(resumed), load_weights(reference))
    assert_same_tensors(optimizer_state(resumed), optimizer_state(reference))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_the_exported_best_checkpoint_tests_alike_in_one_process(tmp_path, trained_run, name):
    """Export the best checkpoint of the 2-rank run and test it in one process: the 2-rank numbers exactly."""
    whole = copy_run(reference_run(trained_run, name), tmp_path)  # export and test write into the run folder
    tested = results(whole, "test")
    done = dsf("export", str(whole), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    exported = load_file(whole / "export" / "model.safetensors")
    best = load_weights(whole / tested["model"])
    assert_same_tensors(exported, best)
    done = dsf(
        "test",
        str(whole),
        "--checkpoint",
        str(whole / "export" / "model.safetensors"),
        *sets("strategy.name=auto", "trainer.devices=1"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    single = results(whole, "test")
    assert {k: v for k, v in single.items() if k != "model"} == {k: v for k, v in tested.items() if k != "model"}
