"""Token-classification tensors: each sentence's words encoded once, each word's tag aligned to its sub-word tokens.

A "sample" for the comparison is one word (the standard in seqeval and the CoNLL evaluations): the model's
prediction for a word is its prediction on the word's first sub-token; later sub-tokens and the special
tokens carry the label -100, so the loss ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from dsf_dist.tasks.token_classification.sentences import IGNORE


@dataclass(frozen=True)
class TokenDataset(Dataset):
    """Sentences encoded once: sub-token ids with aligned labels, plus word-level targets padded to
    `max_words`, so every batch's test predictions have one fixed width and gather across ranks."""

    items: list[dict[str, torch.Tensor]]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def encode(
    sentences: list[dict[str, list[str]]], tokenizer: Any, labels: list[str], max_words: int, max_length: int
) -> TokenDataset:
    ids = {name: i for i, name in enumerate(labels)}
    return TokenDataset([_encode_one(s, tokenizer, ids, max_words, max_length) for s in sentences])


def _encode_one(
    sentence: dict[str, list[str]], tokenizer: Any, ids: dict[str, int], max_words: int, max_length: int
) -> dict[str, torch.Tensor]:
    encoding = tokenizer(sentence["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = encoding.word_ids()
    tags = [ids[tag] for tag in sentence["tags"]]
    sub_labels, first_sub_token, previous = [], [IGNORE] * max_words, None
    for position, word in enumerate(word_ids):
        first = word is not None and word != previous
        sub_labels.append(tags[word] if first else IGNORE)
        if first:
            first_sub_token[word] = position
        previous = word
    word_labels = tags + [IGNORE] * (max_words - len(tags))
    return {
        "input_ids": torch.tensor(encoding["input_ids"]),
        "attention_mask": torch.tensor(encoding["attention_mask"]),
        "labels": torch.tensor(sub_labels),
        "word_labels": torch.tensor(word_labels),
        # IGNORE where truncation dropped the word: the model then predicts 'O' for it (and is scored on it).
        "first_sub_token": torch.tensor(first_sub_token),
    }


class Collate:
    """Pad sub-token sequences to the batch's longest; word-level tensors already share one width."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        from torch.nn.utils.rnn import pad_sequence

        pads = {"input_ids": self.pad_id, "attention_mask": 0, "labels": IGNORE}
        batch = {
            key: pad_sequence([i[key] for i in items], batch_first=True, padding_value=v) for key, v in pads.items()
        }
        for key in ("word_labels", "first_sub_token"):
            batch[key] = torch.stack([i[key] for i in items])
        return batch
