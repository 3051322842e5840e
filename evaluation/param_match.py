"""Give the candidate the baseline's parameter count by choosing its model width.

Counts are of non-embedding parameters (Kaplan et al. 2020): with a 8192-token vocabulary the
embedding dwarfs the mixers and would let any mixer "match". The baseline keeps the preset's
width; the candidate's width moves in steps of its head count, and when its blocks have an MLP
the MLP width is then tuned to close the remaining gap. Both counts are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from linarch.models.configuration import mlp_width

from .mixers import MixerSpec
from .problems import ModelShape, Problem
from .synthetic import TokenSplit

VOCAB_MODULES = ("lm_head", "head")


@dataclass(frozen=True)
class ParamCount:
    total: int
    non_embedding: int


@dataclass(frozen=True)
class MatchResult:
    """The shapes chosen for both mixers and their parameter counts."""

    baseline_shape: ModelShape
    candidate_shape: ModelShape
    baseline_params: ParamCount
    candidate_params: ParamCount
    tolerance: float

    @property
    def relative_difference(self) -> float:
        """candidate / baseline - 1, on non-embedding parameters."""
        return self.candidate_params.non_embedding / max(1, self.baseline_params.non_embedding) - 1

    @property
    def within_tolerance(self) -> bool:
        return abs(self.relative_difference) <= self.tolerance


def count_parameters(model: nn.Module) -> ParamCount:
    """Unique parameters (tied ones once), and those outside token embeddings and vocab heads."""
    seen: dict[int, int] = {}
    vocab: set[int] = set()
    for name, module in model.named_modules():
        is_vocab = isinstance(module, nn.Embedding) or name.split(".")[-1] in VOCAB_MODULES
        for p in module.parameters(recurse=False):
            seen[id(p)] = p.numel()
            if is_vocab:
                vocab.add(id(p))
    total = sum(seen.values())
    return ParamCount(total, total - sum(seen[i] for i in vocab))


def shape_parameters(problem: Problem, mixer: MixerSpec, shape: ModelShape) -> ParamCount | None:
    """Parameter count of `mixer` at `shape`, or None when the mixer rejects that shape.

    The model must also run a short forward pass: some widths build but fail on the first call
    (an odd head dimension under rotary embeddings, say).
    """
    probe = TokenSplit(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            model = problem.build_model(mixer, shape)
            problem.loss(model, probe)
        except (ValueError, RuntimeError, AssertionError, TypeError, IndexError):
            return None
    return count_parameters(model)


def match_width(problem: Problem, candidate: MixerSpec, baseline: MixerSpec,
                tolerance: float = 0.05) -> MatchResult:
    """The candidate shape whose non-embedding count is closest to the baseline's."""
    base_shape = problem.shape
    base = shape_parameters(problem, baseline, base_shape)
    if base is None:
        raise ValueError(f"baseline {baseline.name} cannot be built at {base_shape}")
    target = base.non_embedding
    step = base_shape.num_heads
    own = shape_parameters(problem, candidate, base_shape)
    guess = base_shape.hidden_size
    if own is not None and own.non_embedding > 0:
        guess = base_shape.hidden_size * math.sqrt(target / own.non_embedding)
    low = max(step, step * math.floor(0.75 * guess / step))
    high = max(low, step * math.ceil(1.35 * guess / step))
    best: tuple[float, ModelShape, ParamCount] | None = None
    for width in range(low, high + 1, step):
        shape = base_shape.resized(width)
        count = shape_parameters(problem, candidate, shape)
        if count is None:
            continue
        gap = abs(count.non_embedding / target - 1)
        if best is None or gap < best[0]:
            best = (gap, shape, count)
    if best is None:
        raise ValueError(f"candidate {candidate.name} builds at no width in [{low}, {high}]")
    _, shape, count = best
    if base_shape.use_mlp and abs(count.non_embedding / target - 1) > 1e-3:
        shape, count = _tune_mlp(problem, candidate, shape, count, target)
    return MatchResult(base_shape, shape, base, count, tolerance)


def _tune_mlp(problem: Problem, mixer: MixerSpec, shape: ModelShape, count: ParamCount,
              target: int) -> tuple[ModelShape, ParamCount]:
    """Move the SwiGLU width (3 * hidden * layers parameters per unit) toward the target."""
    probe_width = shape.intermediate_size or mlp_width(shape.hidden_size)
    per_unit = 3 * shape.hidden_size * shape.num_layers
    wanted = probe_width + round((target - count.non_embedding) / per_unit)
    tuned = shape.resized(shape.hidden_size, max(8, wanted))
    tuned_count = shape_parameters(problem, mixer, tuned)
    if tuned_count is None or abs(tuned_count.non_embedding - target) >= abs(
            count.non_embedding - target):
        return shape, count
    return tuned, tuned_count
