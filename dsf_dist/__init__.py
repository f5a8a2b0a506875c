"""dsf-dist: one YAML file decides how PyTorch Lightning trains; then test, evaluate, compare.

`Main` and `Comparison` (the seed tutorial's API) import lazily, so `import dsf_dist` and
`dsf --help` stay free of torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Comparison", "Main"]


def __getattr__(name: str) -> Any:
    if name == "Main":
        from dsf_dist.pipeline import Main

        return Main
    if name == "Comparison":
        from dsf_dist.comparison.report import Comparison

        return Comparison
    raise AttributeError(name)
