"""Model extension points and built-ins: PlModel, network builders, baseline existing models."""
