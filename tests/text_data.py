"""A tiny text-classification project built offline: requests labelled by intent (JSONL, CSV or parquet), a WordPiece
tokenizer trained on them, and tiny BERT models written with save_pretrained (a body with no head, a fine-tuned
head with the same labels in another order, a head with other labels), so that dsf loads them back through the
real from_pretrained path. Nothing comes from the Hugging Face Hub."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

INTENTS = {
    "alarm": ["wake me at {time}", "set an alarm for {time}", "alarm at {time} please", "cancel my {time} alarm"],
    "music": ["play some {genre}", "put on {genre} music", "i want to hear {genre}", "shuffle my {genre} songs"],
    "weather": ["will it rain in {city}", "weather in {city} today", "is it cold in {city}", "forecast for {city}"],
}
SLOTS = {
    "time": ["six", "seven thirty", "noon", "eight", "five am"],
    "genre": ["jazz", "rock", "classical", "hip hop", "folk"],
    "city": ["paris", "london", "tokyo", "berlin", "madrid"],
}
LABELS = sorted(INTENTS)


def rows(count: int, seed: int, pair: bool = False) -> list[dict[str, str]]:
    rng = random.Random(seed)
    found = []
    for i in range(count):
        label = LABELS[i % len(LABELS)]
        template = rng.choice(INTENTS[label])
        slot = template[template.index("{") + 1 : template.index("}")]
        row = {"text": template.format(**{slot: rng.choice(SLOTS[slot])}), "label": label}
        if pair:
            row["context"] = rng.choice(["from the phone", "from the car", "from the kitchen"])
        found.append(row)
    return found


def write_jsonl(path: Path, count: int, seed: int, **kwargs) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows(count, seed, **kwargs)))
    return path


def write_csv(path: Path, count: int, seed: int, **kwargs) -> Path:
    found = rows(count, seed, **kwargs)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(found[0]))
        writer.writeheader()
        writer.writerows(found)
    return path


def tokenizer():
    """BERT's WordPiece scheme over this corpus's own words, each whole, and their letters (alone and as ##
    continuations) for anything else, numbered in sorted order: the same tokenizer in every process, so every
    session's base model is the same. (One trained by `tokenizers` is numbered in hash-map order, which differs
    per process: the base model, and how well 3 epochs fine-tune it, differed from session to session.)"""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from dsf_dist.tasks.sequence_classification.hf import SPECIAL_TOKENS, bert_tokenizer

    split = pre_tokenizers.BertPreTokenizer().pre_tokenize_str
    texts = [row["text"] + " " + row.get("context", "") for row in rows(300, 0, pair=True)]
    words = {word for text in texts for word, _ in split(text.lower())}
    letters = {letter for word in words for letter in word}
    tokens = [*SPECIAL_TOKENS, *sorted(words | letters), *sorted(f"##{letter}" for letter in letters)]
    vocab = {token: index for index, token in enumerate(tokens)}
    return bert_tokenizer(Tokenizer(models.WordPiece(vocab, unk_token="[UNK]")))


def tiny_bert_config(**kwargs):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **kwargs,
    )


def save_base_model(folder: Path, seed: int = 0) -> Path:
    """A 'pretrained' BERT body (no head), as bert-base-uncased would be."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    BertModel(tiny_bert_config()).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def save_classifier(folder: Path, labels: list[str], seed: int = 1) -> Path:
    """A sequence classifier whose head has `labels`, in that order (random weights)."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_bert_config(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder
