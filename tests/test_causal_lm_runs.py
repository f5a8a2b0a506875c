"""The causal LM task end to end on 2 real CPU ranks: configs/causal_lm.yaml at test size (a tiny GPT-2 pre-trained
on Python's documentation, compared with the Kneser-Ney baseline) under ddp, fsdp and deepspeed stage 3, each
trained once for the session. From those runs: every test token scored once, the same accumulated and clipped
steps under each strategy, sharded strategies within a memory budget DDP exceeds, the Hugging Face export's logits
equal to the checkpoint's; and the chain a fresh clone runs: pre-train, export, fine-tune (configs/
causal_lm_finetune.yaml) against the base model. Plus FSDP1's clip-by-norm (the GPU path) on 2 gloo ranks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import causal_lm_data as lm
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, copy_run, dsf, results, sets

from dsf_dist import cli
from dsf_dist.files import read_arrays

os.environ["HF_HUB_OFFLINE"] = "1"  # inherited by the dsf subprocesses: a Hub lookup would fail the test
# bf16-mixed under ddp and fsdp (autocast, fp32 weights: their steps match fp32's to 1e-7 here); ZeRO-3 in fp32,
# since DeepSpeed's bf16 keeps bf16 weights whose rounding moves them by 1e-4 (it runs in bf16 in the fine-tune).
STRATEGIES = {
    "ddp": ["strategy.name=ddp", "trainer.precision=bf16-mixed"],
    "fsdp": ["strategy.name=fsdp", "trainer.precision=bf16-mixed"],
    "deepspeed": ["strategy.name=deepspeed", "strategy.deepspeed.stage=3"],
}


@pytest.fixture(scope="module")
def pretrained(trained_run):
    """The strategy's shared run of configs/causal_lm.yaml at test size, on 2 ranks (trained on first use)."""

    def run(strategy: str) -> Path:
        return trained_run(f"lm-{strategy}", *lm.tiny_pretraining("trainer.devices=2", *STRATEGIES[strategy]))

    return run


def run_task(run: Path):
    """The run's causal LM task, as `dsf test RUN` builds it: its config, its tokenizer, its splits."""
    from dsf_dist.config import load_config
    from dsf_dist.tasks import get_task

    cfg = load_config(run / "config.yaml")
    task = get_task("causal_lm")
    task.run_root = run
    return cfg, task, task.splits(cfg)


def weights(run: Path) -> dict[str, torch.Tensor]:
    from dsf_dist.checkpoints import load_weights

    return load_weights(run / results(run, "train")["best_checkpoint"])  # relative to the run folder


def odd_block_size(run: Path) -> int:
    """lm.BLOCK, or the next block size that packs the run's test tokens into an odd number of blocks."""
    tokens = results(run, "test")["num_tokens"]  # every real token is a target: blocks of block_size - 1 of them
    return next(size for size in range(lm.BLOCK, 64) if math.ceil(tokens / (size - 1)) % 2 == 1)


# -- each strategy ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_pretraining_trains_tests_evaluates_and_compares(pretrained, strategy):
    run = pretrained(strategy)
    from transformers import AutoTokenizer

    from dsf_dist.tasks.causal_lm.corpus import documents

    cfg, _, _ = run_task(run)
    tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")  # the BPE trained on the training split, kept
    texts = list(documents(cfg).test["text"])
    test_tokens = sum(len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])  # + EOS each
    trained, existing = results(run, "test"), results(run, "eval")
    assert trained["num_tokens"] == existing["num_tokens"] == test_tokens  # every test token once, 2 ranks
    assert existing["model"] == "dsf_dist.tasks.causal_lm.ngram:kneser_ney"
    report = results(run, "comparison")
    interval = report["statistics"]["bootstrap"]["metrics"]["perplexity"]
    assert interval["difference_ci"][0] <= interval["difference"] <= interval["difference_ci"][1]
    assert report["comparison"]["perplexity"]["trained"] == pytest.approx(math.exp(trained["token_loss"]))
    assert report["gates"]["checks"][0]["metric"] == "perplexity"  # the config's min_relative gate ran
    assert "perplexity" in (run / "results" / "comparison.md").read_text()
    assert (run / "results" / "comparison.html").is_file()
    if strategy == "fsdp":  # wrap units and activation checkpointing from the model's _no_split_modules
        fsdp = yaml.safe_load((run / "config.yaml").read_text())["strategy"]["fsdp"]
        assert fsdp["wrap_modules"] == ["GPT2Block"] and fsdp["activation_checkpointing"] == ["GPT2Block"]


@pytest.mark.slow
@pytest.mark.distributed
def test_strategies_take_the_same_accumulated_and_clipped_steps(pretrained):
    """SGD with momentum, 4 batches accumulated 2 by 2, gradients clipped to a norm of 1e-3: two optimizer steps
    whose updates have norm lr * 1e-3 each, so the weights move by between 0.9 and 2.9 times lr * clip (momentum
    0.9) from where they started, and every strategy ends at the same weights."""
    import pytorch_lightning as pl

    runs = {strategy: pretrained(strategy) for strategy in STRATEGIES}
    assert {results(run, "train")["global_step"] for run in runs.values()} == {2}
    cfg, task, splits = run_task(runs["ddp"])
    pl.seed_everything(cfg.run.seed, workers=True, verbose=False)  # as Main does before it builds the model
    start = {key: value.detach() for key, value in task.module(cfg, cfg.model, splits).state_dict().items()}
    ends = {strategy: weights(run) for strategy, run in runs.items()}
    keys = [key for key in start if key != "network.lm_head.weight"]  # tied to the token embedding
    moved = math.sqrt(sum(float(((ends["ddp"][key] - start[key]) ** 2).sum()) for key in keys))
    assert 0.9 * lm.LR * lm.CLIP <= moved <= 2.9 * lm.LR * lm.CLIP * (1 + 1e-4)
    for strategy in ("fsdp", "deepspeed"):
        for key in keys:
            torch.testing.assert_close(ends[strategy][key], ends["ddp"][key], rtol=0, atol=1e-6, msg=strategy)


@pytest.mark.slow
@pytest.mark.distributed
def test_sharded_strategies_train_within_a_budget_ddp_exceeds(pretrained):
    """The case FSDP exists for: a per-rank budget of 0.6x DDP's training state (parameters, gradients, optimizer
    state and any master copy, in bytes each rank holds), which DDP exceeds and fsdp and ZeRO-3 keep."""
    parts = ("parameters", "gradients", "optimizer_state", "master_weights")

    def per_rank(strategy: str) -> list[int]:
        ranks = results(pretrained(strategy), "memory")["ranks"]
        assert len(ranks) == 2 and all("error" not in rank for rank in ranks), ranks
        return [sum(rank[part] for part in parts) for rank in ranks]

    ddp = per_rank("ddp")
    budget = 0.6 * max(ddp)
    assert min(ddp) > budget
    for strategy in ("fsdp", "deepspeed"):
        assert max(per_rank(strategy)) <= budget, (strategy, per_rank(strategy), ddp)
        assert results(pretrained(strategy), "memory")["ranks"][0]["optimizer_state"] > 0  # it did step


# -- test scoring on an uneven split ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.distributed
def test_test_scores_every_token_once_on_an_uneven_split(pretrained, tmp_path):
    """2 ranks cannot split the odd number of test blocks evenly; the gathered predictions (ZeRO-3, fp32) equal one
    process's."""
    run = pretrained("deepspeed")
    copy = copy_run(run, tmp_path)
    block = odd_block_size(copy)
    if block != lm.BLOCK:  # another CPython's pydoc topics: test again on 2 ranks with a block size that is odd
        done = dsf("test", str(copy), *sets(f"data.block_size={block}"), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    two_ranks = read_arrays(copy / "results" / "test_predictions.npz")
    done = dsf(
        "test", str(copy), *sets("strategy.name=auto", "trainer.devices=1", f"data.block_size={block}"), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = read_arrays(copy / "results" / "test_predictions.npz")
    blocks = math.ceil(results(copy, "test")["num_tokens"] / (block - 1))
    assert blocks % 2 == 1
    assert len(np.unique(two_ranks["block"])) == len(np.unique(one["block"])) == blocks
    assert np.array_equal(one["index"], two_ranks["index"]) and np.array_equal(one["target"], two_ranks["target"])
    np.testing.assert_allclose(one["preds"], two_ranks["preds"], atol=1e-5)


# -- the Hugging Face export ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_hf_export_loads_in_transformers_with_the_checkpoints_logits(pretrained, strategy, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsf_dist.checkpoints import load_into

    run = copy_run(pretrained(strategy), tmp_path)
    assert cli.main(["export", str(run), "--format", "hf"]) == 0, capsys.readouterr().err
    folder = run / "export" / "hf"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {path.name for path in folder.iterdir()}
    exported = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    cfg, task, splits = run_task(run)
    module = task.module(cfg, cfg.model, splits)
    load_into(module, run / results(run, "train")["best_checkpoint"])
    batch = tokenizer(
        ["def f(x):\n    return x", "The try statement specifies handlers"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        ours = module.eval()({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}).logits
        theirs = exported(**batch).logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


# -- pre-train -> export -> fine-tune, as a fresh clone runs it ------------------------------------------------
@pytest.mark.slow
@pytest.mark.distributed
def test_finetuning_the_export_is_compared_with_its_base_model(pretrained, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    base = copy_run(pretrained("ddp"), tmp_path)
    assert cli.main(["export", str(base), "--format", "hf"]) == 0, capsys.readouterr().err
    data = lm.write_jsonl(tmp_path / "notes.jsonl", lm.documents(40))
    overrides = sets(
        "trainer.devices=2",
        "strategy.name=deepspeed",
        "strategy.deepspeed.stage=3",
        "trainer.precision=bf16-mixed",
        f"model.pretrained={base / 'export' / 'hf'}",
        f"data.path={data}",
        "data.text_field=body",
        f"data.block_size={lm.BLOCK}",
        "data.batch_size=4",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        "comparison.bootstrap_resamples=200",
    )
    done = dsf("run", "-c", str(lm.FINETUNE), "--output", "runs", *overrides, cwd=tmp_path)
    run = tmp_path / "runs" / "causal-lm-finetune"
    assert done.returncode in (0, 3), done.stderr[-3000:]
    assert done.returncode == (0 if results(run, "comparison")["gates"]["passed"] else 3)  # 3: the gate failed
    existing = results(run, "eval")
    assert existing["model"].endswith("(the base model)")
    # The base model scored by hand with transformers on the same test blocks: dsf's eval is its mean token loss.
    _, _, splits = run_task(run)
    network = AutoModelForCausalLM.from_pretrained(base / "export" / "hf", use_safetensors=True).eval()
    total = count = 0.0
    with torch.no_grad():
        for i in range(len(splits.test)):
            item = {key: value[None] for key, value in splits.test[i].items()}
            logits = network(input_ids=item["input_ids"], attention_mask=item["attention_mask"]).logits[0, :-1]
            labels = item["labels"][0, 1:]
            scored = labels != -100
            total += float(torch.nn.functional.cross_entropy(logits[scored], labels[scored], reduction="sum"))
            count += int(scored.sum())
    assert existing["num_tokens"] == count
    assert existing["token_loss"] == pytest.approx(total / count, rel=2e-2)  # dsf scored it in bf16, this in fp32
    report = results(run, "comparison")
    assert report["gates"]["checks"][0]["gate"] == "no_significant_regression"
    assert report["statistics"]["bootstrap"]["metrics"]["token_loss"]["difference_ci"] is not None


# -- FSDP1 (the GPU path) clips by norm ------------------------------------------------------------------------
@pytest.mark.distributed
def test_fsdp1_clips_by_the_norm_over_all_shards(tmp_path):
    """Lightning's FSDP1 precision plugin refuses clip-by-norm; dsf's clips with FSDP's own clip_grad_norm_. Clipping
    each rank's local shards instead would leave a global norm of clip * sqrt(2) at 2 ranks."""
    out = tmp_path / "clip.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fsdp1_clip.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["plugin"] == "ClippingFSDPPrecision"
    assert figures["dsf"]["before"] > 1.0 and figures["dsf"]["after"] == pytest.approx(0.5, rel=1e-4)
    assert figures["local shards"]["after"] == pytest.approx(0.5 * math.sqrt(2), rel=1e-2)
