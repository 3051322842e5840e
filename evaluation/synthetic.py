"""Shared pieces of the synthetic tasks: a token split and the seeding of its generators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IGNORE = -100


@dataclass(frozen=True)
class TokenSplit:
    """inputs [N, T] and per-position labels [N, T] (IGNORE where nothing is scored)."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape != self.labels.shape:
            raise ValueError(
                f"inputs {tuple(self.inputs.shape)} and labels {tuple(self.labels.shape)} differ"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def batch(self, index: torch.Tensor) -> TokenSplit:
        return TokenSplit(self.inputs[index], self.labels[index])


def split_rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per (seed, stream): train and test data never share draws."""
    words = [ord(c) for c in stream]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def stack(rows: list[tuple[np.ndarray, np.ndarray]]) -> TokenSplit:
    """Stack equal-length (inputs, labels) rows into a TokenSplit."""
    inputs = np.stack([r[0] for r in rows]).astype(np.int64)
    labels = np.stack([r[1] for r in rows]).astype(np.int64)
    return TokenSplit(torch.from_numpy(inputs), torch.from_numpy(labels))
