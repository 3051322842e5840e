"""linarch.kernels."""
