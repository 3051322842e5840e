"""linarch.search."""
