"""Network builders (the seed's pl_wrapper/network_module role). Plain nn.Modules: no distribution here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from dsf_dist.imports import load_object


def mlp(input_size: int, output_size: int, hidden_sizes: Sequence[int] = (128, 64), dropout: float = 0.1) -> nn.Module:
    layers: list[nn.Module] = []
    width = input_size
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, output_size))
    return nn.Sequential(*layers)


def autoencoder(
    input_size: int, output_size: int | None = None, hidden_size: int = 64, code_size: int = 3
) -> nn.Module:
    """The seed's autoencoder: input -> 64 -> 3 -> 64 -> input (the seed used 28*28 inputs)."""
    return nn.Sequential(
        nn.Linear(input_size, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, code_size),
        nn.Linear(code_size, hidden_size),
        nn.ReLU(),
        nn.Linear(hidden_size, output_size or input_size),
    )


BUILT_IN = {"mlp": mlp, "autoencoder": autoencoder}


def build_network(name: str, input_size: int, output_size: int, kwargs: dict[str, Any]) -> nn.Module:
    factory = BUILT_IN.get(name) or load_object(name, "model.network")
    try:
        return factory(input_size=input_size, output_size=output_size, **kwargs)
    except TypeError as err:
        from dsf_dist.errors import ConfigError

        raise ConfigError(f"model.network_kwargs: {err}; match the arguments of network '{name}'") from None
