"""AutoModelForSequenceClassification inside a LightningModule: the trained model (a pretrained folder with a new
or kept head, or a new model from model.architecture) and the existing model (a fine-tuned folder, scored with its
own tokenizer on the same test texts). Needs the hf extra."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from dsf_dist.models.plmodel import configure_optimizers
from dsf_dist.tasks.sequence_classification import hf

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def build_network(source: dict[str, Any], labels: list[str], trust_remote_code: bool) -> Any:
    """source: {pretrained, columns} (columns None: a new head) or {architecture, vocab_size, pad_token_id}."""
    if "architecture" in source:
        config = hf.new_config(source["architecture"], labels, source["vocab_size"], source["pad_token_id"])
        return hf.new_network(config)
    key = "existing_model.path" if source.get("existing") else "model.pretrained"
    if source.get("columns") is not None:  # a head already fine-tuned on these labels: kept as it is
        return hf.pretrained_network(source["pretrained"], key, trust_remote_code)
    return hf.pretrained_network(
        source["pretrained"], key, trust_remote_code, ignore_mismatched_sizes=True, **hf.label_kwargs(labels)
    )


class SequenceClassifier(pl.LightningModule):
    """test_step returns class scores (N, C) in the data's label order and the label ids."""

    def __init__(self, model_config: dict[str, Any], labels: list[str], source: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()  # plain strings, lists and dicts: loads with weights_only=True
        self.model_config = model_config
        trust = bool(model_config.get("trust_remote_code", False))
        self.network = build_network(source, labels, trust)
        columns = source.get("columns")
        self.register_buffer("columns", torch.tensor(columns) if columns is not None else None, persistent=False)
        # The existing model reads the test texts with its own tokenizer, which need not be the trained model's.
        self.tokenizer = (
            hf.load_tokenizer(source["pretrained"], "existing_model.path") if source.get("existing") else None
        )
        self.max_length = int(source.get("max_length", 512))
        if not source.get("existing"):
            self.network.train()  # from_pretrained returns eval mode; fine-tuning wants dropout on

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.tokenizer is not None:
            batch = self._own_tokens(batch)
        logits = self.network(**{key: batch[key] for key in INPUTS if key in batch}).logits
        return logits[:, self.columns] if self.columns is not None else logits

    def _own_tokens(self, batch: dict[str, Any]) -> dict[str, Any]:
        encoded = self.tokenizer(
            batch["text"],
            batch.get("text_pair"),
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        return {key: value.to(self.device) for key, value in encoded.items()}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self(batch), batch["labels"])
        size = len(batch["labels"])  # the batch's texts are lists: Lightning cannot infer its size
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch)
        accuracy = (logits.argmax(-1) == batch["labels"]).float().mean()
        loss, size = F.cross_entropy(logits, batch["labels"]), len(batch["labels"])
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=size)
        self.log("val_acc", accuracy, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=size)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        # Through self(...), not self.network: under FSDP the root module's forward gathers the root's shards.
        return {"preds": self(batch).detach(), "target": batch["labels"].detach()}

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.model_config, self.parameters(), self.trainer)
