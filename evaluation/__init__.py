"""linarch.evaluation."""
