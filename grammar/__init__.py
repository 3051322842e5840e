"""linarch.grammar."""
