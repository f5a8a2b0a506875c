"""Documents -> token blocks: tokenized once (datasets' map, cached with the data), packed end to end with an EOS
after each document, cut into blocks of block_size tokens that each start with BOS.

Because each block starts with BOS, every real token of the split is a target exactly once: the model (which
shifts the labels itself, labels = input_ids) predicts block token t from tokens 0..t-1, and only BOS and the
last block's padding carry the label -100. Test scoring therefore covers every test token once, on any number
of ranks (dsf_dist/data/samplers.py gives each block to one rank).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

IGNORE = -100  # Hugging Face's (and torch's cross_entropy) label for positions that are not scored


class Blocks(Dataset):
    """A split as fixed-length blocks: input_ids, attention_mask (0 on padding) and labels (-100 on BOS and
    padding). `documents` says which document of the split each position's token belongs to (-1: BOS, padding)."""

    def __init__(self, ids: np.ndarray, lengths: np.ndarray, documents: np.ndarray, vocab_size: int) -> None:
        self.ids, self.lengths, self.documents = ids, lengths, documents
        self.vocab_size = vocab_size

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(self.ids[index].astype(np.int64))
        real = torch.arange(len(ids)) < int(self.lengths[index])
        labels = torch.where(real, ids, torch.full_like(ids, IGNORE))
        labels[0] = IGNORE  # BOS: context, never a target
        return {"input_ids": ids, "attention_mask": real.long(), "labels": labels}

    def labels(self) -> np.ndarray:
        """Every block's labels, as the test predictions file stores its targets."""
        positions = np.arange(self.ids.shape[1])
        labels = np.where(positions[None, :] < self.lengths[:, None], self.ids, IGNORE).astype(np.int64)
        labels[:, 0] = IGNORE
        return labels

    @property
    def num_tokens(self) -> int:
        """Scored tokens: all but each block's BOS."""
        return int((self.lengths - 1).sum())


def tokenize(documents: Any, tokenizer: Any, fingerprint: str) -> tuple[np.ndarray, np.ndarray]:
    """All documents' token ids end to end (no special tokens added) and each document's length, through datasets'
    map so that a file-backed split is tokenized once and cached beside the data (the fingerprint names the
    tokenizer, so a new one re-tokenizes); read back from Arrow without a Python list per document."""
    encoded = documents.map(
        lambda batch: {"input_ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]},
        batched=True,
        remove_columns=documents.column_names,
        new_fingerprint=f"{documents._fingerprint}-{fingerprint}"[:64],
    )
    column = encoded.data.column("input_ids").combine_chunks()
    return column.values.to_numpy().astype(np.int64), np.diff(column.offsets.to_numpy())


def pack(tokens: np.ndarray, lengths: np.ndarray, block_size: int, special: dict[str, int], vocab_size: int) -> Blocks:
    """Documents end to end, each followed by EOS; blocks of BOS + (block_size - 1) tokens; the last one padded."""
    eos, bos, pad = special["eos_token_id"], special["bos_token_id"], special["pad_token_id"]
    stream = np.insert(tokens, np.cumsum(lengths), eos)  # an EOS after each document
    owner = np.repeat(np.arange(len(lengths)), np.asarray(lengths) + 1)
    width = block_size - 1
    count = max(1, -(-len(stream) // width))
    padded = count * width - len(stream)
    tokens = np.concatenate([stream, np.full(padded, pad)]).reshape(count, width)
    owners = np.concatenate([owner, np.full(padded, -1)]).reshape(count, width)
    ids = np.concatenate([np.full((count, 1), bos), tokens], axis=1)
    documents = np.concatenate([np.full((count, 1), -1), owners], axis=1)
    lengths = np.full(count, block_size)
    lengths[-1] = block_size - padded
    dtype = np.int32 if max(vocab_size, bos, pad) < 2**31 else np.int64
    return Blocks(ids.astype(dtype), lengths, documents.astype(np.int32), vocab_size)
