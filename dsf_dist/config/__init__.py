"""Config: schema (typed sections), loading, --set overrides and one-line validation messages."""

from dsf_dist.config.loader import dump, load_config
from dsf_dist.config.schema import DsfConfig

__all__ = ["DsfConfig", "dump", "load_config"]
