"""Multi-query associative recall, as Zoology (Arora et al. 2024) defines it.

A sequence opens with `num_kv_pairs` key-value pairs k1 v1 k2 v2 ...: keys drawn without
replacement from [1, vocab/2), values without replacement from [vocab/2, vocab). Each key is
then queried once, at an even offset 2*g after the context, where the gaps g are drawn without
replacement from [0, (T - 2 * pairs) / 2) with weights a * i**(a - 1) (i = g + 1, a = 0.01): a
power law that puts most queries close to the context. The label of a query position is its
key's value; every other label is -100. The remaining positions hold token 0, which is replaced
by uniform random tokens from [0, vocab) (Zoology's `random_non_queries`, on by default).
The score is the accuracy over query positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .synthetic import IGNORE, TokenSplit, split_rng


@dataclass(frozen=True)
class MQARSetting:
    """One MQAR configuration; Zoology's grid is (64, 4), (128, 8), (256, 16) at vocab 8192."""

    vocab_size: int = 8192
    seq_len: int = 64
    num_kv_pairs: int = 4
    power_a: float = 0.01
    random_non_queries: bool = True

    def __post_init__(self) -> None:
        if self.seq_len % 2:
            raise ValueError(f"seq_len must be even, got {self.seq_len}")
        if self.vocab_size <= self.seq_len:
            raise ValueError("vocab_size must exceed seq_len (Zoology's assertion)")
        if 4 * self.num_kv_pairs > self.seq_len:
            raise ValueError("need 4 * num_kv_pairs <= seq_len: one query slot per key")
        if self.num_kv_pairs > self.vocab_size // 2 - 1:
            raise ValueError("more keys than the key vocabulary [1, vocab/2) holds")


def distinct_rows(rng: np.random.Generator, low: int, high: int, rows: int, k: int) -> np.ndarray:
    """[rows, k] integers from [low, high), distinct within each row, uniform over such rows."""
    pool = high - low
    if k * k < pool:
        # Rejection of rows with a repeat: exact, and nearly every row passes at this ratio.
        out = rng.integers(low, high, size=(rows, k))
        while True:
            ordered = np.sort(out, axis=1)
            bad = np.nonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))[0]
            if bad.size == 0:
                return out
            out[bad] = rng.integers(low, high, size=(bad.size, k))
    return np.stack([rng.choice(pool, size=k, replace=False) + low for _ in range(rows)])


def power_law_gaps(rng: np.random.Generator, space: int, rows: int, k: int, a: float) -> np.ndarray:
    """[rows, k] distinct gaps in [0, space), drawn one after another with weight a*i**(a-1).

    Successive weighted draws without replacement are the top-k of log-weight plus Gumbel noise
    (Efraimidis and Spirakis), in the order of the draws: the distribution of numpy's
    `choice(space, k, replace=False, p=p)` that Zoology calls, without a Python loop.
    """
    i = np.arange(1, space + 1, dtype=np.float64)
    log_w = np.log(a) + (a - 1.0) * np.log(i)
    keys = log_w[None, :] + rng.gumbel(size=(rows, space))
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def generate_mqar(setting: MQARSetting, num_examples: int, seed: int, stream: str) -> TokenSplit:
    """`num_examples` MQAR sequences from the generator of (seed, stream)."""
    rng = split_rng(seed, f"mqar-{stream}")
    n, v, t, pairs = num_examples, setting.vocab_size, setting.seq_len, setting.num_kv_pairs
    half = v // 2
    keys = distinct_rows(rng, 1, half, n, pairs)
    values = distinct_rows(rng, half, v, n, pairs)
    context = 2 * pairs
    gaps = power_law_gaps(rng, (t - context) // 2, n, pairs, setting.power_a)

    inputs = np.zeros((n, t), dtype=np.int64)
    labels = np.full((n, t), IGNORE, dtype=np.int64)
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    query_pos = context + 2 * gaps
    np.put_along_axis(inputs, query_pos, keys, axis=1)
    np.put_along_axis(labels, query_pos, values, axis=1)
    if setting.random_non_queries:
        filler = rng.integers(0, v, size=(n, t))
        inputs = np.where(inputs == 0, filler, inputs)
    return TokenSplit(torch.from_numpy(inputs), torch.from_numpy(labels))


def query_accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy over labelled positions (equal count per example: the per-example mean)."""
    keep = labels != IGNORE
    if not bool(keep.any()):
        raise ValueError("no labelled positions to score")
    return float((predictions[keep] == labels[keep]).float().mean())
