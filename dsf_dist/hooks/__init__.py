"""Callbacks, one concern per file: checkpoints and early stopping, test-prediction gathering."""
