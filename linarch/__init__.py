"""linarch: a compiler and search system for linear-attention architectures."""
