"""Hugging Face token classification: AutoModelForTokenClassification and its tokenizer, from_pretrained from a
model name or a local folder, inside a LightningModule. Needs the hf extra (transformers)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

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


def load_tokenizer(pretrained: str):
    try:
        tokenizer = transformers_module().AutoTokenizer.from_pretrained(pretrained)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.pretrained: no tokenizer at '{pretrained}' ({_first_line(err)})") from None
    if not getattr(tokenizer, "is_fast", False):  # word_ids(), which aligns tags to sub-tokens, is fast-only
        raise ConfigError(
            f"model.pretrained: '{pretrained}' has no fast tokenizer (tokenizer.json); save a fast one there"
        )
    return tokenizer


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _from_pretrained(pretrained: str, key: str, **kwargs: Any) -> torch.nn.Module:
    transformers = transformers_module()
    transformers.logging.set_verbosity_error()  # its load report lists the new head's weights: expected here
    transformers.logging.disable_progress_bar()
    try:
        return transformers.AutoModelForTokenClassification.from_pretrained(pretrained, **kwargs)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: cannot load '{pretrained}' for token classification ({_first_line(err)})") from None


def fresh_head(pretrained: str, labels: list[str]) -> torch.nn.Module:
    """A pretrained body with a token-classification head for this data's labels (new if the sizes differ)."""
    return _from_pretrained(
        pretrained,
        "model.pretrained",
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        ignore_mismatched_sizes=True,
    )


def output_columns(pretrained: str, labels: list[str]) -> list[int]:
    """For each of our labels, the column of an already fine-tuned model's output that predicts it (matched by
    name from its config.json, which is cheap to read: the check runs before training)."""
    try:
        config = transformers_module().AutoConfig.from_pretrained(pretrained)
    except (OSError, ValueError) as err:
        raise ConfigError(f"existing_model.path: cannot read '{pretrained}' ({_first_line(err)})") from None
    theirs = [config.id2label[i] for i in range(config.num_labels)]
    if sorted(theirs) != sorted(labels):
        raise ConfigError(
            f"existing_model.path: '{pretrained}' predicts labels {theirs}, the data has {labels}; "
            "give a model fine-tuned on the same tag set"
        )
    return [theirs.index(name) for name in labels]


def trained_head(pretrained: str, labels: list[str]) -> tuple[torch.nn.Module, list[int]]:
    """An already fine-tuned model (the existing model) and, for each of our labels, its output column."""
    columns = output_columns(pretrained, labels)
    return _from_pretrained(pretrained, "existing_model.path"), columns


class TokenClassifier(pl.LightningModule):
    """test_step returns each sentence's word-level predictions and targets, padded with -100 to a fixed
    width (dsf flattens them to one sample per word before scoring)."""

    def __init__(self, pretrained: str, labels: list[str], model_config: dict[str, Any], existing: bool = False):
        super().__init__()
        self.save_hyperparameters()  # plain strings, lists and dicts: loads with weights_only=True
        self.model_config = model_config
        if existing:
            self.network, columns = trained_head(pretrained, labels)
            self.register_buffer("columns", torch.tensor(columns), persistent=False)
        else:
            self.network, self.columns = fresh_head(pretrained, labels), None
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
