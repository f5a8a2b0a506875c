"""Write what this project starts from: data/train.jsonl and data/test.jsonl (data.py). `dsf init` ran it once;
run it again to start over:

    python prepare.py
"""

from pathlib import Path

from data import write_corpus

HERE = Path(__file__).parent

if __name__ == "__main__":
    labels = write_corpus(HERE / "data")
    print(f"prepare.py: wrote data/ (labels {', '.join(labels)})")
