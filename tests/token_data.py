"""A tiny token-classification project built offline: BIO-tagged JSONL sentences, a WordPiece tokenizer whose
vocabulary splits long words into two sub-tokens, and tiny BERT models written with save_pretrained, so that
dsf loads them back through the real from_pretrained path (nothing comes from the Hugging Face Hub)."""

from __future__ import annotations

import json
import random
from pathlib import Path

PEOPLE = [["alice"], ["bob"], ["carolina"], ["david"], ["maria", "lopez"], ["johnson"], ["ann", "marie", "smith"]]
PLACES = [["paris"], ["london"], ["berlin"], ["new", "york"], ["madrid"], ["tokyo"]]
COMPANIES = [["acme", "corp"], ["globex"], ["initech"], ["umbrella", "group"]]
TEMPLATES = [
    "{PER} lives in {LOC}",
    "{PER} works for {ORG} in {LOC}",
    "yesterday {PER} visited {LOC} with {PER}",
    "the office of {ORG} is in {LOC}",
    "{ORG} hired {PER} last year",
    "we met {PER} at the station",
]
POOLS = {"PER": PEOPLE, "LOC": PLACES, "ORG": COMPANIES}


def sentence(rng: random.Random) -> dict[str, list[str]]:
    tokens, tags = [], []
    for part in rng.choice(TEMPLATES).split():
        if part.startswith("{"):
            kind = part[1:-1]
            words = rng.choice(POOLS[kind])
            tokens += words
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
        else:
            tokens.append(part)
            tags.append("O")
    return {"tokens": tokens, "tags": tags}


def write_sentences(path: Path, count: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps(sentence(rng)) + "\n" for _ in range(count)))
    return path


def vocabulary() -> dict[str, int]:
    """Words of up to 5 letters whole; longer ones as their first 3 letters + '##' the rest (2 sub-tokens)."""
    words = {w for template in TEMPLATES for w in template.split() if not w.startswith("{")}
    words |= {w for pool in POOLS.values() for entity in pool for w in entity}
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    for word in sorted(words):
        pieces += [word] if len(word) <= 5 else [word[:3], "##" + word[3:]]
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}


def tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def tiny_bert_config(**kwargs):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(vocabulary()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **kwargs,
    )


def save_base_model(folder: Path, seed: int = 0) -> Path:
    """A 'pretrained' BERT body (no task head), as bert-base-uncased would be."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    BertModel(tiny_bert_config()).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def save_existing_model(folder: Path, labels: list[str], seed: int = 1) -> Path:
    """A token-classification model with the same tag set in another order (its output columns differ)."""
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    order = list(reversed(labels))
    config = tiny_bert_config(
        num_labels=len(order), id2label=dict(enumerate(order)), label2id={n: i for i, n in enumerate(order)}
    )
    BertForTokenClassification(config).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder
