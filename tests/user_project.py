"""A user's own LightningModule and LightningDataModule, written for stock Lightning (no dsf imports).

The one contract with dsf: test_step returns {"preds": ..., "target": ...}.
"""

import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class DigitsDataModule(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        bunch = load_digits()
        x = torch.tensor(bunch.data, dtype=torch.float32) / 16
        y = torch.tensor(bunch.target)
        self.train_set = TensorDataset(x[:1200], y[:1200])
        self.val_set = TensorDataset(x[1200:1500], y[1200:1500])
        self.test_set = TensorDataset(x[1500:], y[1500:])  # 297 samples

    def train_dataloader(self):
        return DataLoader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test_set, self.batch_size)


class DigitsLitModule(pl.LightningModule):
    def __init__(self, hidden: int = 64, lr: float = 0.01):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y), sync_dist=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        return {"preds": self.net(x).softmax(-1), "target": y}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
