"""The data: documents of text, as JSON lines (data.path and data.test_path in config.yaml):

    {"title": "while", "text": "The \"while\" statement\n*****\n\nThe \"while\" statement is used for ..."}

dsf reads those files through Hugging Face datasets (.txt, .jsonl or .parquet; data.text_field names the field),
tokenizes each document, packs the documents end to end into blocks of data.block_size tokens, and splits
data.path into train and validation documents by data.split (data.test_path is the test set). Every token of the
test documents is scored once, by the trained model and by the existing one alike.

This project starts on text that needs no download (prepare.py wrote data/): Python's own help topics
(pydoc_data.topics, shipped with every CPython), one document each. Put your own files there, or point data.path
and data.test_path at them; write_corpus() is where you would convert your documents.
"""

from __future__ import annotations

import json
from pathlib import Path


def documents() -> list[dict[str, str]]:
    from pydoc_data.topics import topics

    return [{"title": title, "text": topics[title]} for title in sorted(topics)]


def write_corpus(folder: Path, test_every: int = 8) -> int:
    """folder/train.jsonl and folder/test.jsonl: every `test_every`-th document is a test one; returns how many
    documents were written."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = documents()
    lines = [json.dumps(row) + "\n" for row in rows]
    (folder / "train.jsonl").write_text("".join(line for i, line in enumerate(lines, 1) if i % test_every))
    (folder / "test.jsonl").write_text("".join(line for i, line in enumerate(lines, 1) if not i % test_every))
    return len(rows)
