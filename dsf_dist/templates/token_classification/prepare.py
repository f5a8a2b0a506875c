"""Write what this project starts from: data/train.jsonl and data/test.jsonl (data.py), the tiny pretrained model
in pretrained/ and the existing model in existing/ (model.py). `dsf init` ran it once; run it again to start over:

    python prepare.py
"""

import sys
from pathlib import Path

try:
    import transformers  # noqa: F401
except ImportError:
    sys.exit("prepare.py: this project needs Hugging Face transformers; run `dsf install-trainer-packages hf`")

from data import write_corpus
from model import save_existing_model, save_pretrained_model

HERE = Path(__file__).parent

if __name__ == "__main__":
    tags = write_corpus(HERE / "data")
    save_pretrained_model(HERE / "pretrained")
    save_existing_model(HERE / "existing", tags)
    print(f"prepare.py: wrote data/, pretrained/ and existing/ (tags {', '.join(tags)})")
