"""The transformers side of sequence classification (no Lightning): tokenizers loaded from a model folder or trained
here on the training split, AutoModelForSequenceClassification from a local folder (safetensors only, the folder's
code only with model.trust_remote_code) or new from model.architecture. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsf_dist.errors import ConfigError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
DEFAULT_VOCAB_SIZE = 8000


def transformers_module():
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "model.task: sequence_classification needs transformers; run `dsf install-trainer-packages hf`"
        ) from None
    transformers.logging.set_verbosity_error()  # its load report lists a new head's weights: expected here
    transformers.logging.disable_progress_bar()
    return transformers


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# -- tokenizers -----------------------------------------------------------------------------------------------
def load_tokenizer(folder: str | Path, key: str, trust_remote_code: bool = False) -> Any:
    try:
        return transformers_module().AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"{key}: cannot load the tokenizer in {folder} ({first_line(err)})") from None


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A lower-casing WordPiece tokenizer (BERT's scheme) trained on `texts`, with BERT's special tokens and its
    single and pair templates. Not reproducible across processes: the trainer numbers its tokens (and breaks ties
    between equally frequent ones) in its hash maps' order, which differs per process. So rank zero keeps the one
    it trained in <run>/tokenizer/ (prepare_run), which the ranks Lightning starts later, `dsf test` and the export
    load. Ranks that an outside launcher starts together (torchrun, srun, Ray) each train their own before that
    folder exists, and their vocabularies can differ: known, not yet handled (start from model.pretrained there)."""
    from tokenizers import Tokenizer, models, trainers

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    bert_scheme(backend).train_from_iterator(texts, trainer)
    return bert_tokenizer(backend)


def bert_scheme(backend: Any) -> Any:
    """BERT's text handling on a WordPiece tokenizer: lower-cased, split on spaces and punctuation, ## joins."""
    from tokenizers import decoders, normalizers, pre_tokenizers

    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    return backend


def bert_tokenizer(backend: Any) -> Any:
    """A transformers tokenizer of a WordPiece vocabulary (which holds SPECIAL_TOKENS): BERT's scheme, its single
    and pair templates, and its special tokens named."""
    from tokenizers import processors

    bert_scheme(backend)
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return transformers_module().PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],  # BERT's segments tell pairs apart
    )


def check_tokenizer_fits(tokenizer: Any, vocab_size: int | None, key: str, folder: str) -> None:
    """Every token id needs an embedding row: a tokenizer larger than the model's vocabulary is another model's."""
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ConfigError(
            f"{key}: the tokenizer in {folder} has {len(tokenizer):,} tokens but the model has {vocab_size:,} "
            "embeddings; save the tokenizer the model was trained with in that folder"
        )


# -- models ---------------------------------------------------------------------------------------------------
def label_kwargs(labels: list[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def pretrained_network(folder: str, key: str, trust_remote_code: bool, **kwargs: Any) -> Any:
    """AutoModelForSequenceClassification.from_pretrained of a local folder the checks in folders.py passed."""
    try:
        return transformers_module().AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust_remote_code, local_files_only=True, **kwargs
        )
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{key}: cannot load {folder} for sequence classification ({first_line(err)})") from None


def new_config(architecture: dict[str, Any], labels: list[str], vocab_size: int, pad_token_id: int) -> Any:
    """model.architecture as a transformers config with the data's labels and the tokenizer's size."""
    kwargs = {"vocab_size": vocab_size, "pad_token_id": pad_token_id, **architecture, **label_kwargs(labels)}
    try:
        return transformers_module().AutoConfig.for_model(**kwargs)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"model.architecture: not a config transformers can build ({first_line(err)})") from None


def new_network(config: Any) -> Any:
    """Random weights (seeded by run.seed, so every rank builds the same ones)."""
    return transformers_module().AutoModelForSequenceClassification.from_config(config)
