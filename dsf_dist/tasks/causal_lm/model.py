"""The causal LM as a LightningModule: a Hugging Face AutoModelForCausalLM (from a pretrained folder, or new from a
config), trained on the model's own shifted-label loss; test_step returns each position's next-token loss and
prediction, so dsf scores every test token once. Needs the hf extra (transformers)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from dsf_dist.models.plmodel import configure_optimizers
from dsf_dist.tasks.causal_lm import hf
from dsf_dist.tasks.causal_lm.blocks import IGNORE


class CausalLM(pl.LightningModule):
    """`network` holds the kwargs of AutoConfig.for_model (a new model) when `pretrained` is None; otherwise the
    weights come from the `pretrained` folder. test_step's preds are (batch, block, 2): at position t the loss
    (nats) of the block's token t given tokens before it, and the token the model ranks first; position 0
    (BOS) and padding hold zeros and are unscored (their target is -100)."""

    def __init__(
        self,
        model_config: dict[str, Any],
        network: dict[str, Any] | None = None,
        pretrained: str | None = None,
        gradient_checkpointing: bool = False,
        key: str = "model.pretrained",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # plain strings, numbers, lists and dicts: loads with weights_only=True
        self.model_config = model_config
        if pretrained:
            trusted = bool(model_config.get("trust_remote_code", False))
            self.network = hf.pretrained_network(pretrained, key, trusted)
        else:
            config = hf.transformers_module().AutoConfig.for_model(**(network or {}))
            self.network = hf.new_network(config)
        self.network.config.use_cache = False  # no key/value cache in training or scoring
        if gradient_checkpointing:
            enable_activation_checkpointing(self.network)
        self.network.train()  # from_pretrained returns eval mode; training wants dropout on
        self._epoch_loss: torch.Tensor | int = 0
        self._epoch_steps = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.network(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch.get("labels")
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch).loss
        # As the built-in PlModel: the step loss on the steps the logger writes, the epoch mean summed here and
        # averaged over ranks once per epoch (no device sync per step).
        self._epoch_loss = loss.detach() + (self._epoch_loss if self._epoch_steps else 0)
        self._epoch_steps += 1
        if (self.global_step + 1) % (self.trainer.log_every_n_steps or 1) == 0:
            self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_steps = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_steps:
            self.log("train_loss_epoch", self._epoch_loss / self._epoch_steps, on_epoch=True, sync_dist=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self(batch).loss
        # Weighted by the batch's target tokens, so val_loss is the mean loss per validation token.
        tokens = int((batch["labels"] != IGNORE).sum())
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=max(tokens, 1))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        # Through self(...), not self.network: under FSDP the root module's forward gathers the root's shards.
        logits = self({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}).logits
        return {"preds": next_token_predictions(logits, batch["labels"]), "target": batch["labels"]}

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.model_config, self.parameters(), self.trainer)


def enable_activation_checkpointing(network: torch.nn.Module) -> None:
    """The Hugging Face model's own, non-reentrant (transformers 5 renamed gradient_checkpointing_enable)."""
    kwargs = {"use_reentrant": False}
    if hasattr(network, "activation_checkpointing_enable"):
        network.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        network.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def next_token_predictions(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(batch, block, 2): the loss of each label given the positions before it, and the model's first choice."""
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    scored = targets != IGNORE
    loss = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), targets.clamp(min=0), reduction="none"
    ).masked_fill(~scored, 0.0)
    choice = logits.argmax(-1).masked_fill(~scored, 0)
    out = torch.zeros(*labels.shape, 2, dtype=torch.float32, device=logits.device)
    out[:, 1:, 0] = loss
    out[:, 1:, 1] = choice.float()  # token ids are exact in float32 up to 2**24
    return out.detach()
