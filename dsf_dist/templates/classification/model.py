"""The model: a plain torch network that knows nothing of distribution (config.yaml's strategy decides how dsf
replicates or shards it).

config.yaml names it (model.network: model:network) and its arguments (model.network_kwargs). dsf's built-in
LightningModule trains it: cross-entropy over its outputs (class scores), the optimizer and scheduler of
model.optimizer and model.scheduler, validation loss and accuracy, and a test step whose per-sample predictions
the comparison scores.

Your own LightningModule instead: write it here and set model.module: model:YourModule (and module_kwargs). Its
test_step returns {"preds": class_scores, "target": labels}; see dsf-dist's README, "Any LightningModule".
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def network(
    input_size: int, output_size: int, hidden_sizes: Sequence[int] = (128, 64), dropout: float = 0.1
) -> nn.Module:
    """input_size and output_size come from the data (64 pixels, 10 digits); the rest from model.network_kwargs."""
    layers: list[nn.Module] = []
    width = input_size
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    net = nn.Sequential(*layers, nn.Linear(width, output_size))
    # Pretrained weights go here: load them into the network before it is returned, e.g.
    #   net.load_state_dict(torch.load("weights.pt", weights_only=True))
    # or build the body from a pretrained model and put a new head of output_size on it, e.g.
    #   body = transformers.AutoModel.from_pretrained("name or folder")
    return net
