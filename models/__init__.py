"""linarch.models."""
