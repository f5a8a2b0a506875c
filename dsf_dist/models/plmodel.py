"""The seed's generic LightningModule: any nn.Module with loss, optimizer, scheduler from config.

The task picks the objective (cross-entropy over class logits, or mean squared error); test_step returns
{"preds", "target"} so the prediction writer can gather every test sample exactly once; a user's own
LightningModule joins the comparison by returning the same from its test_step.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torchmetrics
from torch.nn import functional as F

from dsf_dist.config.schema import ModelConfig
from dsf_dist.models.networks import build_network

Objective = Literal["cross_entropy", "mse"]
LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


class PlModel(pl.LightningModule):
    def __init__(
        self, model_config: dict[str, Any], input_size: int, output_size: int, objective: Objective = "cross_entropy"
    ) -> None:
        super().__init__()
        # Plain dicts, strings and ints only: the checkpoint then loads with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.config = ModelConfig.model_validate(model_config)
        self.network = build_network(self.config.network, input_size, output_size, self.config.network_kwargs)
        self.loss = LOSSES[objective]
        # Cross-entropy outputs are class logits: softmaxed into class scores for the test, accuracy tracked.
        self.classifies = objective == "cross_entropy"
        self.val_accuracy = torchmetrics.Accuracy("multiclass", num_classes=output_size) if self.classifies else None
        self._epoch_loss: torch.Tensor | int = 0
        self._epoch_steps = 0

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name around every hook it calls, several times a step; nn.Module's
        # __setattr__ checks each value against parameters, modules and buffers first. A string is none of them.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, target = batch
        loss = self.loss(self(inputs), target)
        # self.log costs more than a small model's step, so the step loss is logged only on the steps the
        # logger writes (log_every_n_steps), and the epoch mean is summed here without a device sync.
        self._epoch_loss = loss.detach() + (self._epoch_loss if self._epoch_steps else 0)
        self._epoch_steps += 1
        if (self.global_step + 1) % (self.trainer.log_every_n_steps or 1) == 0:
            self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_steps = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_steps:  # averaged over ranks: one all-reduce per epoch
            self.log("train_loss_epoch", self._epoch_loss / self._epoch_steps, on_epoch=True, sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        inputs, target = batch
        outputs = self(inputs)
        self.log("val_loss", self.loss(outputs, target), on_epoch=True, prog_bar=True, sync_dist=True)
        if self.val_accuracy is not None:
            self.val_accuracy(outputs, target)
            self.log("val_acc", self.val_accuracy, on_epoch=True, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        inputs, target = batch
        outputs = self(inputs)
        self.log("test_loss", self.loss(outputs, target), on_epoch=True, sync_dist=True)
        preds = outputs.softmax(dim=-1) if self.classifies else outputs
        return {"preds": preds.detach(), "target": target.detach()}

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.config, self.parameters(), self.trainer)


def configure_optimizers(config: ModelConfig | dict[str, Any], params: Any, trainer: pl.Trainer | None) -> Any:
    """Optimizer and scheduler from model.optimizer / model.scheduler; shared by the built-in modules."""
    config = ModelConfig.model_validate(config) if isinstance(config, dict) else config
    opt = config.optimizer
    if opt.name == "sgd":
        optimizer = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    else:
        optimizer_class = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(params, lr=opt.lr, weight_decay=opt.weight_decay)
    sched = config.scheduler
    if sched.name == "none":
        return optimizer
    if sched.name == "cosine":
        epochs = trainer.max_epochs if trainer is not None else None
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs or 1, 1))
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=sched.step_size, gamma=sched.gamma)
    return {"optimizer": optimizer, "lr_scheduler": scheduler}
