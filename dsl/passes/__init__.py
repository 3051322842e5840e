"""linarch.dsl.passes."""
