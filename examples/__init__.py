"""linarch.examples."""
