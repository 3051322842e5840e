"""linarch.codegen."""
