"""The Hugging Face side of the causal LM task (transformers and tokenizers, no Lightning): tokenizers loaded from
local folders or trained here, the model's config from a pretrained folder or from model.architecture, and the
model loaded from safetensors only. Nothing is downloaded (local_files_only everywhere)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dsf_dist.config.schema import ModelConfig
from dsf_dist.errors import ConfigError
from dsf_dist.tasks.causal_lm.folders import check_model_folder, check_tokenizer_folder, context_length

END_OF_TEXT = "<|endoftext|>"
DEFAULT_VOCAB_SIZE = 8192
MAX_DEFAULT_BLOCK = 1024


def transformers_module():
    try:
        import transformers
    except ImportError:
        raise ConfigError("model.task: causal_lm needs transformers; run `dsf install-trainer-packages hf`") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# -- tokenizers -----------------------------------------------------------------------------------------------
def load_tokenizer(path: str | Path, key: str, trust_remote_code: bool = False) -> Any:
    check_tokenizer_folder(str(path), key, trust_remote_code)
    try:
        tokenizer = transformers_module().AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"{key}: cannot load the tokenizer in {path} ({first_line(err)})") from None
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"{key}: the tokenizer in {path} has no end-of-text token (eos_token), which separates documents; "
            "give a causal LM's tokenizer"
        )
    return tokenizer


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE (GPT-2's scheme: any byte sequence encodes, nothing is unknown) trained on `texts`, with
    one special token, <|endoftext|>, as BOS, EOS and padding. Training is deterministic: the same texts and size
    give the same tokenizer in every process."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return transformers_module().PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, pad_token=END_OF_TEXT
    )


def special_ids(tokenizer: Any) -> dict[str, int]:
    """BOS starts every block, EOS ends every document, padding fills the last block (and is never scored)."""
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}


def fingerprint(tokenizer: Any) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def same_tokenizer(ours: Any, theirs: Any, probe: str) -> bool:
    """Perplexities over different tokenizations do not compare: the same vocabulary, the same special tokens,
    and the same ids for a sample of the test text."""
    return (
        ours.get_vocab() == theirs.get_vocab()
        and special_ids(ours) == special_ids(theirs)
        and ours(probe)["input_ids"] == theirs(probe)["input_ids"]
    )


# -- the model's config ---------------------------------------------------------------------------------------
def new_config_kwargs(model: ModelConfig, tokenizer: Any) -> dict[str, Any]:
    """AutoConfig.for_model's arguments for a new model: model.architecture, with the tokenizer's size (unless
    architecture names vocab_size) and its special tokens."""
    sizes = {"vocab_size": len(tokenizer), **(model.architecture or {})}
    return {**sizes, **special_ids(tokenizer)}


def network_config(model: ModelConfig, tokenizer: Any) -> Any:
    """The Hugging Face config of the model to train: the pretrained folder's, or a new one from
    model.architecture."""
    if model.pretrained:
        return folder_config(model.pretrained, "model.pretrained")
    try:
        return transformers_module().AutoConfig.for_model(**new_config_kwargs(model, tokenizer))
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"model.architecture: not a config transformers can build ({first_line(err)})") from None


def folder_config(path: str, key: str, trust_remote_code: bool = False) -> Any:
    check_model_folder(path, key, trust_remote_code)
    try:
        return transformers_module().AutoConfig.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{key}: cannot read the config in {path} ({first_line(err)})") from None


def block_size(requested: int | None, config: Any, key: str = "model") -> int:
    """data.block_size, checked against the model's context length; None: that length, at most 1024."""
    longest = context_length(config.to_dict())
    if requested is None:
        return min(longest or MAX_DEFAULT_BLOCK, MAX_DEFAULT_BLOCK)
    if longest is not None and requested > longest:
        raise ConfigError(
            f"data.block_size: {requested} tokens is above the context length of {key} ({longest}); "
            f"set data.block_size to at most {longest}"
        )
    return requested


def check_tokenizer_fits(tokenizer: Any, config: Any, key: str, tokenizer_source: str, model: str) -> None:
    """Every token id must have an embedding row: a tokenizer larger than the model's vocabulary is another
    model's tokenizer. `key` names where the tokenizer came from."""
    size = len(tokenizer)
    if size > config.vocab_size:
        raise ConfigError(
            f"{key}: the tokenizer ({tokenizer_source}) has {size:,} tokens but the model ({model}) has "
            f"{config.vocab_size:,}; give the tokenizer the model was trained with"
        )


def pretrained_network(path: str, key: str, trust_remote_code: bool = False) -> Any:
    """AutoModelForCausalLM.from_pretrained of a local folder, safetensors weights only, no remote code unless
    model.trust_remote_code."""
    check_model_folder(path, key, trust_remote_code)
    try:
        return transformers_module().AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, trust_remote_code=trust_remote_code, local_files_only=True
        )
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{key}: cannot load a causal language model from {path} ({first_line(err)})") from None


def new_network(config: Any) -> Any:
    """Random weights (seeded by run.seed, so every rank builds the same ones), or the skeleton an export fills."""
    return transformers_module().AutoModelForCausalLM.from_config(config)
