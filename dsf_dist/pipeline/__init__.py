"""The seed's pipeline: Main (main.py) and its steps, fit (trainer.py), test (testing.py) and the existing model's
predictions (existing.py)."""

from dsf_dist.pipeline.main import Main

__all__ = ["Main"]
