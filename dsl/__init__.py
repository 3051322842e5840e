"""linarch.dsl."""
