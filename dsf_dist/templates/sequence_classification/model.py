"""The model: a Hugging Face sequence classifier, built or loaded by dsf.

With model.architecture in config.yaml (as this project starts), dsf builds a new model from a transformers config
with random weights, AutoModelForSequenceClassification.from_config(AutoConfig.for_model(...)), and trains a
WordPiece tokenizer on the training texts, so that it runs with no download. Its scores say nothing about BERT;
they show the pipeline working. To fine-tune a real encoder, replace model.architecture with
`pretrained: path/to/folder` (a folder save_pretrained wrote, safetensors weights): dsf calls
AutoModelForSequenceClassification.from_pretrained(folder) with a head for the data's labels.

After a run, `dsf export runs/<run> --format hf` writes runs/<run>/export/hf/, which the rest of your stack loads
with load_export() below, without dsf.
"""

from __future__ import annotations

from pathlib import Path


def load_export(folder: str | Path):
    """The exported model and its tokenizer, as transformers loads them (config.json holds id2label)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
