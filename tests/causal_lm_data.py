"""Tiny causal-LM projects built offline: the shipped configs with a GPT-2 small enough to train in seconds, JSONL
documents cut from Python's own documentation (pydoc_data.topics), and random-weight model folders written with
save_pretrained (nothing comes from the Hugging Face Hub)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, sets

PRETRAIN = REPO / "configs" / "causal_lm.yaml"
FINETUNE = REPO / "configs" / "causal_lm_finetune.yaml"
TINY = {
    "model_type": "gpt2",
    "n_layer": 2,
    "n_embd": 32,
    "n_head": 2,
    "n_positions": 64,
    "vocab_size": 320,
    # No dropout: runs under different strategies then compute the same steps.
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}
BLOCK = 29  # 861 test blocks with CPython 3.11's pydoc topics: an odd number, which 2 ranks cannot split evenly
CLIP, LR = 1e-3, 0.1


def tiny_pretraining(*extra: str) -> list[str]:
    """configs/causal_lm.yaml at test size: 2 optimizer steps of 2 accumulated batches each, clipped, SGD with
    momentum, activation checkpointing, per-rank memory measured."""
    return [
        "-c",
        str(PRETRAIN),
        *sets(
            f"model.architecture={json.dumps(TINY)}",
            f"model.optimizer={{name: sgd, lr: {LR}, momentum: 0.9}}",
            "model.activation_checkpointing=true",
            f"data.block_size={BLOCK}",
            "data.batch_size=4",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=4",
            "trainer.limit_val_batches=2",
            "trainer.accumulate_grad_batches=2",
            f"trainer.gradient_clip_val={CLIP}",
            "trainer.log_every_n_steps=1",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "run.memory_report=true",
            "comparison.bootstrap_resamples=200",
            # Trained for 2 steps, the model loses to the n-gram model: a gate it passes, so the run exits 0.
            "comparison.min_relative={perplexity: -1000}",
            *extra,
        ),
    ]


def documents(count: int, chars: int = 700) -> list[dict[str, str]]:
    """`count` documents of about `chars` characters of real English: pydoc topics, cut at a line end."""
    from pydoc_data.topics import topics

    out = []
    for title in sorted(topics)[:count]:
        text = topics[title][:chars]
        out.append({"title": title, "body": text[: text.rfind("\n") + 1 or chars]})
    return out


def write_jsonl(
    path: Path,
    rows: list[dict],
) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def train_tokenizer(texts: list[str], vocab_size: int = 320):
    from dsf_dist.tasks.causal_lm.hf import train_tokenizer as train

    return train(texts, vocab_size)


def save_model(folder: Path, tokenizer, vocab_size: int | None = None, positions: int = 64, seed: int = 0) -> Path:
    """A random GPT-2 written by save_pretrained (safetensors), with `tokenizer` beside it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    sizes = {**TINY, "vocab_size": vocab_size or len(tokenizer), "n_positions": positions}
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**sizes, **ids)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
