"""Token-classification data as read: JSONL sentences `{"tokens": [...], "tags": [...]}` (BIO tags), and the
label set taken from the data. Torch-free, so the task's checks run when a config loads."""

from __future__ import annotations

import json
from pathlib import Path

from dsf_dist.errors import ConfigError

IGNORE = -100  # torch's cross_entropy ignore_index, and Hugging Face's convention for unlabelled positions


def read_sentences(path: str | Path, key: str = "data.path") -> list[dict[str, list[str]]]:
    """Every line one sentence with as many tags as tokens; a bad line is named by file and line number."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file; give a JSONL file of {{'tokens': [...], 'tags': [...]}}")
    sentences = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            tokens, tags = [str(t) for t in record["tokens"]], [str(t) for t in record["tags"]]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path}:{number}: not a JSON object with 'tokens' and 'tags' lists; fix or remove the line"
            ) from None
        if len(tokens) != len(tags) or not tokens:
            raise ConfigError(f"{path}:{number}: {len(tokens)} tokens but {len(tags)} tags; give one tag per token")
        sentences.append({"tokens": tokens, "tags": tags})
    if not sentences:
        raise ConfigError(f"{key}: {path} holds no sentences; one JSON object per line")
    return sentences


def label_names(*corpora: list[dict[str, list[str]]]) -> list[str]:
    """Every tag in the data, 'O' first, then by entity type with B- before I-: the same order from the
    same data, so a run's label ids never depend on which split a tag happened to land in."""
    tags = {tag for sentences in corpora for sentence in sentences for tag in sentence["tags"]}

    def order(tag: str) -> tuple[int, str, str]:
        prefix, _, kind = tag.partition("-")
        return (0, "", "") if tag == "O" else (1, kind or prefix, prefix)

    return sorted(tags, key=order)
