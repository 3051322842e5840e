"""Give the candidate the baseline's parameter count (or state size) by choosing the mixer's
own width: its head dimension, its key/value expansion, its inner expansion or its low-rank
dimensions, never the residual stream the arms share.

Counts are of non-embedding parameters (Kaplan et al. 2020): with a large vocabulary the
embedding dwarfs the mixers and would let any mixer "match". Shrinking the model width instead
(what this module did before) narrows the candidate's whole residual stream and every other
layer with it, so a mixer with more parameters per width was compared in a thinner model.

The baseline keeps the preset's shape. The candidate's width keywords (the first group of
`WIDTH_GROUPS` its layer accepts) are scaled together by one factor, searched on a log grid;
the count nearest the target wins, and a result outside the tolerance is an error (`MatchError`)
that names the fix. The state a mixer carries per sequence is measured from the built layer's
decoding cache, so it is reported beside the parameters, and `MatchTarget.STATE` matches it
instead (Zoology's x-axis: accuracy at equal state).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from linarch.models.base_conv import BaseConv
from linarch.models.cache import LinarchCache

from .mixers import MixerSpec
from .problems import ModelShape, Problem, shape_kwargs
from .synthetic import TokenSplit

VOCAB_MODULES = ("lm_head", "head")

# The keywords that set a mixer's own width, by family; the first group a layer accepts is
# scaled (all of its members that the layer has, by the same factor).
WIDTH_GROUPS: tuple[tuple[str, ...], ...] = (
    ("head_dim",),                                   # Gated DeltaNet, KDA, Comba, DeltaProduct
    ("expand_k", "expand_v"),                        # DeltaNet, GLA, RetNet, linear attention
    ("expand", "state_size"),                        # Mamba2
    ("decay_low_rank_dim", "a_low_rank_dim", "gate_low_rank_dim"),  # RWKV-7
)


class MatchTarget(enum.Enum):
    PARAMS = "params"  # non-embedding parameters (the default)
    STATE = "state"    # bytes of recurrent state per sequence at the problem's longest test
    NONE = "none"      # each mixer at its declared width for the shape (Zoology's protocol)


class MatchError(ValueError):
    """No width of the candidate lands within the tolerance of the baseline."""


@dataclass(frozen=True)
class ParamCount:
    total: int
    non_embedding: int


@dataclass(frozen=True)
class ArmSize:
    """One arm's shape and what it costs: parameters and state bytes per sequence."""

    shape: ModelShape
    params: ParamCount
    state_bytes: int


@dataclass(frozen=True)
class MatchResult:
    """The shapes chosen for both mixers, their sizes, and how close the match came."""

    baseline: ArmSize
    candidate: ArmSize
    tolerance: float
    target: MatchTarget = MatchTarget.PARAMS
    knobs: tuple[str, ...] = ()  # the candidate's width keywords that were scaled
    scale: float = 1.0

    @property
    def baseline_shape(self) -> ModelShape:
        return self.baseline.shape

    @property
    def candidate_shape(self) -> ModelShape:
        return self.candidate.shape

    @property
    def baseline_params(self) -> ParamCount:
        return self.baseline.params

    @property
    def candidate_params(self) -> ParamCount:
        return self.candidate.params

    @property
    def relative_difference(self) -> float:
        """candidate / baseline - 1, on the matched quantity."""
        return _measure(self.candidate, self.target) / max(1, _measure(self.baseline,
                                                                       self.target)) - 1

    @property
    def params_difference(self) -> float:
        return self.candidate.params.non_embedding / max(1, self.baseline.params.non_embedding) - 1

    @property
    def state_difference(self) -> float:
        return self.candidate.state_bytes / max(1, self.baseline.state_bytes) - 1

    @property
    def within_tolerance(self) -> bool:
        """Always true when nothing was matched (MatchTarget.NONE): no claim to check."""
        return self.target is MatchTarget.NONE or \
            abs(self.relative_difference) <= self.tolerance + 1e-12


def _measure(arm: ArmSize, target: MatchTarget) -> int:
    return arm.state_bytes if target is MatchTarget.STATE else arm.params.non_embedding


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


def state_bytes(model: nn.Module, seq_len: int) -> int:
    """Bytes (fp32) the model's mixer layers keep per sequence after `seq_len` tokens: their
    decoding state, as the layers themselves store it (recurrent states, conv windows, a KV
    cache). The BaseConv layers every arm shares are left out."""
    backbone = getattr(model, "model", None) or getattr(model, "encoder", None) or model
    layers = getattr(backbone, "layers", None)
    if layers is None:
        return 0
    cache = LinarchCache(len(layers))
    ids = torch.zeros(1, seq_len, dtype=torch.long)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        backbone(input_ids=ids, cache=cache, use_cache=True)
    total = 0
    for idx, block in enumerate(layers):
        if isinstance(block.mixer, BaseConv):
            continue
        for tensor in (cache.get_layer_state(idx) or {}).values():
            if torch.is_tensor(tensor) and tensor.is_floating_point():
                total += tensor[:1].numel() * 4
    return total


def measure(problem: Problem, mixer: MixerSpec, shape: ModelShape) -> ArmSize | None:
    """Parameters and state of `mixer` at `shape`, or None when the mixer rejects that shape.

    The model must also run a short forward pass: some widths build but fail on the first call
    (an odd head dimension under rotary embeddings, say).
    """
    probe = TokenSplit(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            model = problem.build_model(mixer, shape)
            problem.loss(model, probe)
            state = state_bytes(model, problem.state_seq_len)
        except (ValueError, RuntimeError, AssertionError, TypeError, IndexError,
                ZeroDivisionError):
            return None
    return ArmSize(shape, count_parameters(model), state)


def shape_parameters(problem: Problem, mixer: MixerSpec, shape: ModelShape) -> ParamCount | None:
    size = measure(problem, mixer, shape)
    return None if size is None else size.params


def width_knobs(mixer: MixerSpec, shape: ModelShape) -> dict[str, float]:
    """The mixer's width keywords and their values at `shape` (its first group it accepts)."""
    signature = inspect.signature(mixer.layer_cls.__init__).parameters
    at_shape = shape_kwargs(mixer, shape)
    defaults = _keyword_defaults(mixer, shape, at_shape)
    for group in WIDTH_GROUPS:
        present = [k for k in group if k in signature]
        if not present:
            continue
        values = {}
        for k in present:
            value = at_shape.get(k, defaults.get(k, signature[k].default))
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                values[k] = value
        if values:
            return values
    return {}


def _keyword_defaults(mixer: MixerSpec, shape: ModelShape, at_shape: dict) -> dict:
    """The value each keyword takes at `shape` when it is not passed. A compiled layer's
    constructor defaults are None (fla's drop-in signature): its `HYPER_PARAMETERS` table holds
    the declared defaults, some of them formulas of earlier keywords, resolved in header order."""
    table = getattr(mixer.layer_cls, "HYPER_PARAMETERS", None)
    if not table:
        return {}
    values: dict = {}
    given = {"hidden_size": shape.hidden_size, "num_heads": shape.num_heads, **at_shape}
    for name, hyper in table.items():
        values[name] = given[name] if name in given else hyper.value(values)
    return values


def _scaled(knobs: dict[str, float], scale: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in knobs.items():
        if isinstance(v, int):
            out[k] = max(1, round(v * scale))
        else:
            out[k] = max(1 / 64, round(v * scale * 64) / 64)  # multiples of 1/64
    return out


def match_width(problem: Problem, candidate: MixerSpec, baseline: MixerSpec,
                tolerance: float = 0.05, target: MatchTarget = MatchTarget.PARAMS,
                widths: Mapping[str, object] | None = None) -> MatchResult:
    """The candidate width whose count (or state) is nearest the baseline's at the preset shape.

    Raises MatchError when no width lands within `tolerance` (relative), naming the nearest.
    `widths` sets the candidate's own keywords when nothing is matched (`MatchTarget.NONE`): a
    configuration a published number was measured at, such as Zoology's Mamba2 d_state 16.
    """
    base_shape = problem.shape
    base = measure(problem, baseline, base_shape)
    if base is None:
        raise MatchError(f"baseline {baseline.name} cannot be built at {base_shape}")
    if widths and target is not MatchTarget.NONE:
        raise MatchError(f"explicit widths {dict(widths)} for {candidate.name} would be "
                         f"overridden by matching {target.value}: use match 'none' with them")
    if target is MatchTarget.NONE:
        shape = base_shape.with_mixer_kwargs(**widths) if widths else base_shape
        size = measure(problem, candidate, shape)
        if size is None:
            raise MatchError(f"candidate {candidate.name} cannot be built at {shape}")
        return MatchResult(base, size, tolerance, target)
    goal = _measure(base, target)
    knobs = width_knobs(candidate, base_shape)
    best: tuple[float, float, ArmSize] | None = None
    tried: dict[tuple, ArmSize | None] = {}

    def consider(scale: float) -> None:
        nonlocal best
        values = _scaled(knobs, scale)
        key = tuple(sorted(values.items()))
        if key not in tried:
            shape = base_shape if scale == 1.0 else base_shape.with_mixer_kwargs(**values)
            tried[key] = measure(problem, candidate, shape)
        size = tried[key]
        if size is None:
            return
        gap = abs(_measure(size, target) / max(1, goal) - 1)
        if best is None or gap < best[0]:
            best = (gap, scale, size)

    consider(1.0)
    if knobs and (best is None or best[0] > 1e-3):
        for i in range(-24, 25):  # factors 1/8 .. 8, 8 per octave
            consider(2.0 ** (i / 8))
        if best is not None:
            centre = best[1]
            for i in range(-8, 9):  # refine between the neighbours of the best factor
                consider(centre * 2.0 ** (i / 64))
    if best is None:
        raise MatchError(f"candidate {candidate.name} builds at no width near {base_shape}")
    gap, scale, size = best
    result = MatchResult(base, size, tolerance, target, tuple(sorted(knobs)), scale)
    if not result.within_tolerance:
        what = "non-embedding parameters" if target is MatchTarget.PARAMS else "state bytes"
        fix = (f"its width keyword(s) {sorted(knobs)} reach no closer"
               if knobs else f"its layer has none of the width keywords "
               f"{[k for g in WIDTH_GROUPS for k in g]}: add one to its signature")
        raise MatchError(
            f"cannot match {what} of {candidate.name} to {baseline.name} within "
            f"{tolerance:.0%}: nearest is {_measure(size, target):,} against {goal:,} "
            f"({result.relative_difference:+.1%}); {fix}, or widen the tolerance "
            f"(--tolerance)")
    return result


def unmatched(problem: Problem, mixer: MixerSpec, tolerance: float = 0.05) -> MatchResult:
    """A lone mixer at the preset shape (no baseline to match)."""
    size = measure(problem, mixer, problem.shape)
    if size is None:
        raise MatchError(f"{mixer.name} cannot be built at {problem.shape}")
    return MatchResult(size, size, tolerance)

