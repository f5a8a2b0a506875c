"""Sequence-classification tensors: each text (or pair) tokenized once, with its label id; the raw texts stay on the
dataset and in each batch, for a TF-IDF baseline and for an existing model that has a tokenizer of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from dsf_dist.tasks.sequence_classification.examples import Examples


@dataclass(frozen=True)
class TextDataset(Dataset):
    texts: list[str]
    pairs: list[str] | None
    labels: list[int]
    """Label ids: positions in the run's label names."""
    items: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def encode(examples: Examples, tokenizer: Any, names: list[str], max_length: int) -> TextDataset:
    ids = {name: i for i, name in enumerate(names)}
    labels = [ids[str(value)] for value in examples.labels]
    encoded = tokenizer(examples.texts, examples.pairs, truncation=True, max_length=max_length)
    keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded]
    items = []
    for row, label in enumerate(labels):
        item: dict[str, Any] = {key: torch.tensor(encoded[key][row]) for key in keys}
        item["labels"] = torch.tensor(label)
        item["text"] = examples.texts[row]
        if examples.pairs is not None:
            item["text_pair"] = examples.pairs[row]
        items.append(item)
    return TextDataset(examples.texts, examples.pairs, labels, items)


class Collate:
    """Pad token sequences to the batch's longest; texts travel as lists of strings (Lightning moves tensors only)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        from torch.nn.utils.rnn import pad_sequence

        pads = {"input_ids": self.pad_id, "attention_mask": 0, "token_type_ids": 0}
        batch: dict[str, Any] = {
            key: pad_sequence([item[key] for item in items], batch_first=True, padding_value=value)
            for key, value in pads.items()
            if key in items[0]
        }
        batch["labels"] = torch.stack([item["labels"] for item in items])
        for key in ("text", "text_pair"):
            if key in items[0]:
                batch[key] = [item[key] for item in items]
        return batch
