"""The plain PyTorch script the start-up benchmark holds dsf-dist against: what the embedded default does up to
its first optimizer step (digits from scikit-learn, a seeded 70/15/15 split, the MLP, Adam), by hand.

Prints the wall time of its first optimizer step (time.time()) as JSON.
"""

import json
import time

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split


def main() -> None:
    torch.manual_seed(42)
    digits = load_digits()
    inputs = torch.tensor(digits.data, dtype=torch.float32) / 16
    data = TensorDataset(inputs, torch.tensor(digits.target))
    train, _, _ = random_split(data, [0.7, 0.15, 0.15], generator=torch.Generator().manual_seed(42))
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs, target = next(iter(DataLoader(train, batch_size=64, shuffle=True)))
    nn.functional.cross_entropy(model(inputs), target).backward()
    optimizer.step()
    print(json.dumps({"first_step_unix_time": time.time()}))


if __name__ == "__main__":
    main()
