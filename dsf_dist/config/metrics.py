"""The metric registry: every metric a task can report, and which way is better.

One table for the whole package: the comparison's "trained is better" and the gates read the direction from
here, and `comparison.*` gates accept exactly these names. A task that computes a new metric adds it here.
"""

from __future__ import annotations

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "mse": False,
    "mae": False,
    "entity_f1": True,
    "token_loss": False,
    "perplexity": False,
    "next_token_accuracy": True,
}

GATEABLE: tuple[str, ...] = tuple(HIGHER_IS_BETTER)
