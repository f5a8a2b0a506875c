"""The data: sentences with one BIO tag per word, as JSON lines (data.path and data.test_path in config.yaml):

    {"tokens": ["maria", "lopez", "lives", "in", "paris"], "tags": ["B-PER", "I-PER", "O", "O", "B-LOC"]}

dsf reads those files, tokenizes each sentence with model.pretrained's tokenizer, aligns each word's tag to its
first sub-token, and splits data.path into train and validation by data.split (data.test_path is the test set).

This project starts on a tiny corpus generated here (prepare.py wrote data/train.jsonl and data/test.jsonl): six
sentence templates filled with names, places and companies. Put your own files there, or point data.path and
data.test_path at them; write_corpus() is where you would convert your own data to JSON lines.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PEOPLE = [["alice"], ["bob"], ["carolina"], ["david"], ["maria", "lopez"], ["johnson"], ["ann", "marie", "smith"]]
PLACES = [["paris"], ["london"], ["berlin"], ["new", "york"], ["madrid"], ["tokyo"]]
COMPANIES = [["acme", "corp"], ["globex"], ["initech"], ["umbrella", "group"]]
ENTITIES = {"PER": PEOPLE, "LOC": PLACES, "ORG": COMPANIES}
TEMPLATES = [
    "{PER} lives in {LOC}",
    "{PER} works for {ORG} in {LOC}",
    "yesterday {PER} visited {LOC} with {PER}",
    "the office of {ORG} is in {LOC}",
    "{ORG} hired {PER} last year",
    "we met {PER} at the station",
]


def sentence(rng: random.Random) -> dict[str, list[str]]:
    """One template filled in: its words, and B-<type> on an entity's first word, I-<type> on the rest, O else."""
    tokens, tags = [], []
    for part in rng.choice(TEMPLATES).split():
        if part.startswith("{"):
            kind = part[1:-1]
            words = rng.choice(ENTITIES[kind])
            tokens += words
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
        else:
            tokens.append(part)
            tags.append("O")
    return {"tokens": tokens, "tags": tags}


def words() -> list[str]:
    """Every word the corpus can hold (the vocabulary of the tokenizer model.py builds)."""
    found = {word for template in TEMPLATES for word in template.split() if not word.startswith("{")}
    found |= {word for pool in ENTITIES.values() for entity in pool for word in entity}
    return sorted(found)


def write_corpus(folder: Path, train: int = 160, test: int = 60, seed: int = 0) -> list[str]:
    """folder/train.jsonl and folder/test.jsonl; returns the tag set, for the existing model's head."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tags: set[str] = set()
    for name, count in (("train.jsonl", train), ("test.jsonl", test)):
        sentences = [sentence(rng) for _ in range(count)]
        tags.update(tag for s in sentences for tag in s["tags"])
        (folder / name).write_text("".join(json.dumps(s) + "\n" for s in sentences))
    return sorted(tags)
