"""An n-gram language model as the existing model of a pre-training run: the language-model analogue of the digits
example's logistic regression, fit on the same training split and scored on the same test tokens.

Interpolated Kneser-Ney smoothing (Chen and Goodman, 1998), one absolute discount for every order: the highest
order counts n-grams, lower orders count distinct left neighbours (continuation counts), and every order hands a
discounted share of its mass to the order below, down to a uniform distribution over the vocabulary, so no token
has zero probability. Contexts stop at block boundaries, as the transformer's do (each block starts with BOS).

    existing_model: {kind: callable, target: "dsf_dist.tasks.causal_lm.ngram:kneser_ney", kwargs: {order: 3}}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dsf_dist.data import Splits


@dataclass(frozen=True)
class Order:
    """Counts of one order: context tuple -> row, and per row the counted next tokens."""

    rows: dict[tuple[int, ...], int]
    tokens: list[np.ndarray]
    counts: list[np.ndarray]


def kneser_ney(datasets: Splits, order: int = 3, discount: float = 0.75) -> np.ndarray:
    """Fit on datasets.train's blocks; return, for each test block, (block, position, [loss, first choice]) as the
    trained model's test_step does: the loss in nats of each token given the tokens before it in its block, and
    the most likely token there (zeros where nothing is scored)."""
    if order < 1 or not 0 < discount < 1:
        raise ValueError(f"order {order} must be >= 1 and discount {discount} between 0 and 1")
    train, test = datasets.train, datasets.test
    vocab = int(max(train.vocab_size, train.ids.max() + 1, test.ids.max() + 1))
    orders = [_count(_grams(train, order), order, k) for k in range(1, order + 1)]
    windows, valid = _windows(test, order)
    out = np.zeros((*test.ids.shape, 2), dtype=np.float32)
    contexts, inverse = np.unique(windows[valid][:, :-1], axis=0, return_inverse=True)
    targets = windows[valid][:, -1]
    losses = np.empty(len(targets), dtype=np.float64)
    choices = np.empty(len(targets), dtype=np.int64)
    inverse = inverse.reshape(-1)
    by_context = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[by_context], np.arange(len(contexts) + 1))
    for row, context in enumerate(contexts):
        members = by_context[bounds[row] : bounds[row + 1]]
        probabilities = _distribution(tuple(int(t) for t in context), orders, discount, vocab)
        losses[members] = -np.log(probabilities[targets[members]])
        choices[members] = int(probabilities.argmax())
    block, position = np.nonzero(valid)
    out[block, position + 1, 0] = losses
    out[block, position + 1, 1] = choices
    return out


def _windows(blocks, order: int) -> tuple[np.ndarray, np.ndarray]:
    """For each block position t >= 1: the n tokens ending at t (context left-padded with BOS inside the block),
    and whether t is a real token."""
    bos = blocks.ids[:, :1]
    padded = np.concatenate([np.repeat(bos, max(order - 2, 0), axis=1), blocks.ids], axis=1).astype(np.int64)
    windows = padded[:, 1:, None] if order == 1 else sliding_window_view(padded, order, axis=1)
    positions = np.arange(windows.shape[1])
    valid = positions[None, :] < (blocks.lengths[:, None] - 1)
    return windows, valid


def _grams(blocks, order: int) -> np.ndarray:
    windows, valid = _windows(blocks, order)
    return windows[valid]


def _count(grams: np.ndarray, order: int, k: int) -> Order:
    """Order k: raw counts of k-grams for the highest order, else the number of distinct tokens seen left of each
    k-gram (its continuation count)."""
    if k == order:
        unique, counts = np.unique(grams[:, order - k :], axis=0, return_counts=True)
    else:
        left_extended = np.unique(grams[:, order - k - 1 :], axis=0)
        unique, counts = np.unique(left_extended[:, 1:], axis=0, return_counts=True)
    contexts, row_of = np.unique(unique[:, :-1], axis=0, return_inverse=True)
    row_of = row_of.reshape(-1)
    by_row = np.argsort(row_of, kind="stable")
    bounds = np.searchsorted(row_of[by_row], np.arange(len(contexts) + 1))
    tokens = [unique[by_row[bounds[r] : bounds[r + 1]], -1] for r in range(len(contexts))]
    counted = [counts[by_row[bounds[r] : bounds[r + 1]]].astype(np.float64) for r in range(len(contexts))]
    rows = {tuple(int(t) for t in context): r for r, context in enumerate(contexts)}
    return Order(rows, tokens, counted)


def _distribution(context: tuple[int, ...], orders: list[Order], discount: float, vocab: int) -> np.ndarray:
    """P(next token | context) over the whole vocabulary, built up from the uniform distribution one order at a
    time: p_k = (max(c - D, 0) + D * types * p_(k-1)) / total, where the order's counts for this context exist."""
    probabilities = np.full(vocab, 1.0 / vocab)
    for k, counts in enumerate(orders, start=1):
        row = counts.rows.get(context[len(context) - (k - 1) :] if k > 1 else ())
        if row is None:
            continue
        tokens, values = counts.tokens[row], counts.counts[row]
        total = values.sum()
        probabilities *= discount * len(tokens) / total
        probabilities[tokens] += np.maximum(values - discount, 0.0) / total
    return probabilities
