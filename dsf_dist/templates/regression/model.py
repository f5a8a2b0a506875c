"""The model: the seed tutorial's autoencoder, a plain torch network that knows nothing of distribution
(config.yaml's strategy decides how dsf replicates or shards it).

config.yaml names it (model.network: model:network) and its arguments (model.network_kwargs). dsf's built-in
LightningModule trains it: mean squared error between its outputs and the targets, the optimizer and scheduler of
model.optimizer and model.scheduler, and a test step whose per-sample values the comparison scores (MSE, MAE).

Your own LightningModule instead: write it here and set model.module: model:YourModule (and module_kwargs). Its
test_step returns {"preds": values, "target": targets}; see dsf-dist's README, "Any LightningModule".
"""

from __future__ import annotations

from torch import nn


def network(input_size: int, output_size: int, hidden_size: int = 64, code_size: int = 3) -> nn.Module:
    """input -> 64 -> 3 -> 64 -> output; input_size and output_size come from the data (64 pixels each), the rest
    from model.network_kwargs."""
    net = nn.Sequential(
        nn.Linear(input_size, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, code_size),
        nn.Linear(code_size, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, output_size),
    )
    # Pretrained weights go here: load them into the network before it is returned, e.g.
    #   net.load_state_dict(torch.load("weights.pt", weights_only=True))
    # or build the encoder from a pretrained model, e.g. transformers.AutoModel.from_pretrained("name or folder").
    return net
