"""The data: texts with a label each, as JSON lines (data.path and data.test_path in config.yaml):

    {"text": "The while statement is used for repeated execution ...", "label": "statements"}

dsf reads those files through Hugging Face datasets (JSONL, CSV or parquet; data.text_field and data.label_field
name the columns), tokenizes each text, takes the label names from the training file (label id i is the i-th name
in sorted order) and splits data.path into train and validation by data.split (data.test_path is the test set).

This project starts on text that needs no download (prepare.py wrote data/): the paragraphs of Python's own help
topics (pydoc_data.topics, shipped with every CPython), each labelled by what its topic is about. Put your own
files there, or point data.path and data.test_path at them; write_corpus() is where you would convert your data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MIN_CHARACTERS = 80  # shorter paragraphs are headings and one-line examples
# A topic's label by its help-topic name (e.g. typesseq-mutable): the first rule naming one of its parts wins.
RULES = [
    ("types", "bltin types typesseq typesmapping typesfunctions typesmethods typesmodules dict lists strings string "
     "sequence numbers numeric integers floating imaginary"),
    ("statements", "assert break continue for if pass raise return try while with yield import global nonlocal del "
     "assignment augassign compound exceptions context"),
    ("data_model", "attribute callable class customization function objects special"),
]  # fmt: skip
OTHER = "expressions_and_more"


def label(topic: str) -> str:
    for name, words in RULES:
        if set(topic.split("-")) & set(words.split()):
            return name
    return OTHER


def paragraphs() -> list[dict[str, str]]:
    from pydoc_data.topics import topics

    rows = []
    for topic in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[topic]):
            text = " ".join(paragraph.split())
            if len(text) >= MIN_CHARACTERS:
                rows.append({"text": text, "label": label(topic)})
    return rows


def write_corpus(folder: Path, test_every: int = 5) -> list[str]:
    """folder/train.jsonl and folder/test.jsonl: every `test_every`-th paragraph of each label is a test one (so
    every test label is also a training label); returns the label names."""
    folder.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    train, test = [], []
    for row in paragraphs():
        count = seen[row["label"]] = seen.get(row["label"], 0) + 1
        (test if count % test_every == 0 else train).append(json.dumps(row) + "\n")
    (folder / "train.jsonl").write_text("".join(train))
    (folder / "test.jsonl").write_text("".join(test))
    return sorted(seen)
