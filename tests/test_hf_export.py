"""`dsf export --format hf` of a token-classification checkpoint, in process: the task's module saved as a Lightning
checkpoint dict (what every strategy's checkpoint consolidates to), exported through Task.export_pretrained, and
loaded back by plain transformers with the data's tag names and the module's own logits. The end-to-end export of
a trained run, through the CLI, is tests/test_text_classification.py's (the same checkpoints/pretrained.py)."""

from __future__ import annotations

import os

import token_data
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_a_token_classification_checkpoint_exports_a_folder_transformers_loads_with_equal_logits(tmp_path):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from dsf_dist.config import load_config
    from dsf_dist.tasks import task_for

    token_data.write_sentences(tmp_path / "train.jsonl", 40, seed=0)
    token_data.save_base_model(tmp_path / "base")
    config = {
        "model": {"task": "token_classification", "pretrained": str(tmp_path / "base")},
        "data": {"path": str(tmp_path / "train.jsonl"), "split": {"train": 0.6, "val": 0.2, "test": 0.2}},
        "existing_model": {"kind": "none"},
    }
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump(config))
    cfg = load_config(tmp_path / "tokens.yaml")
    task = task_for(cfg)
    torch.manual_seed(3)
    module = task.module(cfg, cfg.model, None).eval()  # a new head with random weights: not the folder's
    torch.save({"state_dict": module.state_dict()}, tmp_path / "best.ckpt")

    out = task.export_pretrained(cfg, str(tmp_path / "best.ckpt"), tmp_path / "export" / "hf")
    model = AutoModelForTokenClassification.from_pretrained(out, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == dict(enumerate(LABELS))
    encoded = tokenizer([["maria", "lopez", "lives", "in", "paris"]], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        ours = module({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}).logits
        theirs = model(**encoded).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    assert sorted(path.name for path in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
