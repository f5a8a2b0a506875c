"""Lightning's own demo transformer as a user would bring it: no test_step and no validation_step. Its WikiText2
download is switched off and its vocabulary kept small; a synthetic stream of tokens stands in for the text."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.demos.transformer import LightningTransformer
from torch.utils.data import DataLoader, TensorDataset

VOCAB = 64


class DemoTransformer(LightningTransformer):
    def __init__(self, vocab_size: int = VOCAB) -> None:
        super().__init__(vocab_size=vocab_size)

    def prepare_data(self) -> None:  # the demo downloads WikiText2 here
        pass


class TokenStream(pl.LightningDataModule):
    """Next-token pairs (a block of tokens, the same block shifted by one) from a seeded random stream."""

    def __init__(self, vocab_size: int = VOCAB, block: int = 16, blocks: int = 32, batch_size: int = 8) -> None:
        super().__init__()
        self.vocab_size, self.block, self.blocks, self.batch_size = vocab_size, block, blocks, batch_size

    def setup(self, stage: str) -> None:
        stream = torch.randint(
            self.vocab_size, (self.blocks * self.block + 1,), generator=torch.Generator().manual_seed(0)
        )
        inputs = stream[:-1].view(self.blocks, self.block)
        self.dataset = TensorDataset(inputs, stream[1:].view(self.blocks, self.block))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, self.batch_size, shuffle=True)
