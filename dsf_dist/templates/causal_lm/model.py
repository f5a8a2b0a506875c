"""The model: a Hugging Face causal language model, built or loaded by dsf.

With model.architecture in config.yaml (as this project starts), dsf pre-trains a new model from a transformers
config with random weights, AutoModelForCausalLM.from_config(AutoConfig.for_model(...)), and trains a byte-level
BPE tokenizer on the training documents (kept in the run folder), so that it runs with no download. To fine-tune a
model instead, replace model.architecture with `pretrained: path/to/folder` (a folder save_pretrained wrote,
safetensors weights), and compare with it as it is: `existing_model: {kind: base}`.

After a run, `dsf export runs/<run> --format hf` writes runs/<run>/export/hf/, which the rest of your stack loads
with load_export() below, without dsf, and which a later run can fine-tune (model.pretrained).
"""

from __future__ import annotations

from pathlib import Path


def load_export(folder: str | Path):
    """The exported model and its tokenizer, as transformers loads them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def generate(folder: str | Path, prompt: str, max_new_tokens: int = 40) -> str:
    """A few tokens from the exported model, to see what it has learned."""
    model, tokenizer = load_export(folder)
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0], skip_special_tokens=True)
