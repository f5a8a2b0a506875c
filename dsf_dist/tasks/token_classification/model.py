"""Hugging Face token classification: AutoModelForTokenClassification and its tokenizer, from_pretrained from a
model name or a local folder, inside a LightningModule. Needs the hf extra (transformers).

A model folder is data (dsf_dist/checkpoints/hf.py): weights load from safetensors only (use_safetensors=True), and
transformers' trust_remote_code is always passed, False unless the config sets model.trust_remote_code, so that
a folder's own code (config.json's auto_map) never runs and never prompts on its own."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from dsf_dist.checkpoints.hf import check_hf_folder
from dsf_dist.errors import ConfigError
from dsf_dist.models.plmodel import configure_optimizers
from dsf_dist.tasks.token_classification.sentences import IGNORE


def transformers_module():
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "model.task: token_classification needs transformers; run `dsf install-trainer-packages hf`"
        ) from None
    return transformers


def load_tokenizer(pretrained: str, trust_remote_code: bool = False):
    try:
        tokenizer = transformers_module().AutoTokenizer.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise _load_error("model.pretrained", pretrained, err, f"no tokenizer at '{pretrained}'") from None
    if not getattr(tokenizer, "is_fast", False):  # word_ids(), which aligns tags to sub-tokens, is fast-only
        raise ConfigError(
            f"model.pretrained: '{pretrained}' has no fast tokenizer (tokenizer.json); save a fast one there"
        )
    return tokenizer


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _load_error(key: str, pretrained: str, err: Exception, what: str) -> ConfigError:
    if "trust_remote_code" in str(err):  # transformers refused a folder that needs its own code to load
        return ConfigError(
            f"{key}: '{pretrained}' needs its own Python code to load (config.json auto_map), and dsf runs a model "
            "folder's code only with model.trust_remote_code: true; set it only for code you have read and trust"
        )
    return ConfigError(f"{key}: {what} ({_first_line(err)})")


def _from_pretrained(pretrained: str, key: str, trust_remote_code: bool, **kwargs: Any) -> torch.nn.Module:
    check_hf_folder(pretrained, key)
    transformers = transformers_module()
    transformers.logging.set_verbosity_error()  # its load report lists the new head's weights: expected here
    transformers.logging.disable_progress_bar()
    try:
        return transformers.AutoModelForTokenClassification.from_pretrained(
            pretrained, use_safetensors=True, trust_remote_code=trust_remote_code, **kwargs
        )
    except (OSError, ValueError) as err:
        raise _load_error(key, pretrained, err, f"cannot load '{pretrained}' for token classification") from None


def fresh_head(pretrained: str, labels: list[str], trust_remote_code: bool = False) -> torch.nn.Module:
    """A pretrained body with a token-classification head for this data's labels (new if the sizes differ)."""
    return _from_pretrained(
        pretrained,
        "model.pretrained",
        trust_remote_code,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        ignore_mismatched_sizes=True,
    )


def existing_labels(pretrained: str, trust_remote_code: bool = False) -> list[str]:
    """An already fine-tuned model's labels in its output order, from its config.json (cheap to read: the check
    runs before training); its folder's weights and code are checked first."""
    check_hf_folder(pretrained, "existing_model.path")
    try:
        config = transformers_module().AutoConfig.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise _load_error("existing_model.path", pretrained, err, f"cannot read '{pretrained}'") from None
    return [config.id2label[i] for i in range(config.num_labels)]


def output_columns(pretrained: str, labels: list[str], trust_remote_code: bool = False) -> list[int]:
    """For each of our labels, the column of an already fine-tuned model's output that predicts it (by name)."""
    return columns_of(existing_labels(pretrained, trust_remote_code), labels, pretrained)


def columns_of(theirs: list[str], labels: list[str], pretrained: str) -> list[int]:
    """The column of `theirs` (a fine-tuned model's labels in output order) for each of our labels."""
    if sorted(theirs) != sorted(labels):
        raise ConfigError(
            f"existing_model.path: '{pretrained}' predicts labels {theirs}, the data has {labels}; "
            "give a model fine-tuned on the same tag set"
        )
    return [theirs.index(name) for name in labels]


def trained_head(
    pretrained: str, labels: list[str], trust_remote_code: bool = False
) -> tuple[torch.nn.Module, list[int]]:
    """An already fine-tuned model (the existing model) and, for each of our labels, its output column."""
    columns = output_columns(pretrained, labels, trust_remote_code)
    return _from_pretrained(pretrained, "existing_model.path", trust_remote_code), columns


class TokenClassifier(pl.LightningModule):
    """test_step returns each sentence's word-level predictions and targets, padded with -100 to a fixed
    width (dsf flattens them to one sample per word before scoring)."""

    def __init__(self, pretrained: str, labels: list[str], model_config: dict[str, Any], existing: bool = False):
        super().__init__()
        self.save_hyperparameters()  # plain strings, lists and dicts: loads with weights_only=True
        self.model_config = model_config
        trust = bool(model_config.get("trust_remote_code", False))  # model.trust_remote_code, for either model
        if existing:
            self.network, columns = trained_head(pretrained, labels, trust)
            self.register_buffer("columns", torch.tensor(columns), persistent=False)
        else:
            self.network, self.columns = fresh_head(pretrained, labels, trust), None
            self.network.train()  # from_pretrained returns eval mode; fine-tuning wants dropout on

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.network(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch.get("labels")
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch).loss
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self(batch)
        predicted, labelled = out.logits.argmax(-1), batch["labels"] != IGNORE
        correct = (predicted == batch["labels"])[labelled].float()
        self.log("val_loss", out.loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_acc", correct.mean(), on_epoch=True, prog_bar=True, sync_dist=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        # Through self(...), not self.network: under FSDP the root module's forward gathers the root's shards.
        logits = self({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}).logits
        if self.columns is not None:
            logits = logits[..., self.columns]
        predicted = logits.argmax(-1)
        first = batch["first_sub_token"]
        words = predicted.gather(1, first.clamp(min=0))
        words = torch.where(first == IGNORE, torch.zeros_like(words), words)  # truncated word: label 0
        words = torch.where(batch["word_labels"] == IGNORE, torch.full_like(words, IGNORE), words)
        return {"preds": words.detach(), "target": batch["word_labels"].detach()}

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.model_config, self.parameters(), self.trainer)
