"""The model: a Hugging Face model and its tokenizer, loaded by dsf with from_pretrained.

dsf's token-classification task calls AutoModelForTokenClassification.from_pretrained(model.pretrained) (a new
tagging head for the data's tags) and AutoTokenizer.from_pretrained(model.pretrained). model.pretrained is a
folder save_pretrained wrote, or a Hugging Face Hub name: to fine-tune a real model, set it in config.yaml, e.g.
`pretrained: bert-base-cased` (then delete the pretrained/ folder and this file's builders).

This project starts from a tiny BERT with random weights (2 layers, 32 wide) and a WordPiece tokenizer built
here from the corpus's words, so it runs with no download: prepare.py saved them to pretrained/, and a second
tiny model with a tagging head to existing/, the existing model config.yaml compares against. Its scores say
nothing about BERT; they show the pipeline working.
"""

from __future__ import annotations

from pathlib import Path

from data import words


def tokenizer():
    """A fast WordPiece tokenizer (dsf needs a fast one: it aligns tags with word_ids()). Words longer than 5
    letters become two sub-tokens, so the alignment of tags to first sub-tokens has something to do."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    for word in words():
        pieces += [word] if len(word) <= 5 else [word[:3], "##" + word[3:]]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def tiny_bert_config(vocab_size: int, **kwargs):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **kwargs,
    )


def save_pretrained_model(folder: Path, seed: int = 0) -> Path:
    """The model to fine-tune: a BERT body without a task head, as bert-base-cased would be."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    tok = tokenizer()
    BertModel(tiny_bert_config(len(tok))).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_existing_model(folder: Path, tags: list[str], seed: int = 1) -> Path:
    """The existing model: a token classifier for the same tags (random weights here; yours is already trained).
    dsf matches its id2label to the data's tags by name, so its label order may differ."""
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    tok = tokenizer()
    config = tiny_bert_config(
        len(tok), num_labels=len(tags), id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)}
    )
    BertForTokenClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
