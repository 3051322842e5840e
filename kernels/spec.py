"""What a generated kernel module computes (KernelSpec) and how it is generated (KernelOptions).

The compiler derives a KernelSpec from a `.lin` program: the transition class of the recurrence
S_t = S_{t-1} A_t + B_t and the element-wise prologue fused in front of it (gate activation, rate
activation, L2 norm of q and k). KernelOptions holds every knob that changes the generated text
(chunk size, input dtype, tuning). Both are frozen and hashable: together they are the cache key
of a rendered module, and `spec_hash` names the rendered file.
"""

from __future__ import annotations

import hashlib
import keyword
import math
from dataclasses import dataclass, fields
from enum import Enum

GENERATOR_VERSION = "1"


class Transition(Enum):
    """The structured class of the state transition A_t; each licenses one chunk algorithm."""

    IDENTITY = "identity"  # A_t = I (linear attention)
    SCALAR_DECAY = "scalar_decay"  # A_t = exp(g_t) I, g [B,T,H] (simple GLA, Mamba2)
    CONSTANT_DECAY = "constant_decay"  # A_t = gamma_h I, log gamma [H] (RetNet)
    DIAGONAL_DECAY = "diagonal_decay"  # A_t = Diag(exp(gk_t)), gk [B,T,H,K] (GLA)
    DELTA = "delta"  # A_t = I - beta_t k_t k_t^T (DeltaNet)
    GATED_DELTA = "gated_delta"  # A_t = exp(g_t) (I - beta_t k_t k_t^T) (Gated DeltaNet)

    @property
    def is_delta(self) -> bool:
        return self in (Transition.DELTA, Transition.GATED_DELTA)

    @property
    def has_token_gate(self) -> bool:
        """True when the transition reads a per-token gate tensor that a GateFn activates."""
        return self in (Transition.SCALAR_DECAY, Transition.DIAGONAL_DECAY,
                        Transition.GATED_DELTA)


class GateFn(Enum):
    """How the log-decay g is formed from the raw gate input."""

    LOG = "log"  # the input already is the log-decay
    LOGSIGMOID_SCALED = "logsigmoid_scaled"  # g = logsigmoid(a) / gate_normalizer (GLA)
    MAMBA = "mamba"  # g = -exp(A_log) * softplus(a + dt_bias) (Mamba2, Gated DeltaNet)


class RateFn(Enum):
    """How the delta-rule rate beta is formed from the raw rate input."""

    RAW = "raw"  # beta is given
    SIGMOID = "sigmoid"  # beta = sigmoid(b), eigenvalues in [0, 1]
    TWO_SIGMOID = "two_sigmoid"  # beta = 2 sigmoid(b), eigenvalues in [-1, 1]


class SpecError(ValueError):
    """A KernelSpec or KernelOptions that no generated module can implement."""


@dataclass(frozen=True)
class KernelSpec:
    """The recurrence and its fused prologue; everything here changes the math."""

    name: str
    transition: Transition
    l2norm_qk: bool = False
    gate: GateFn = GateFn.LOG
    rate: RateFn = RateFn.RAW
    gate_normalizer: float = 16.0  # divisor of logsigmoid for GateFn.LOGSIGMOID_SCALED

    def __post_init__(self) -> None:
        object.__setattr__(self, "transition", Transition(self.transition))
        object.__setattr__(self, "gate", GateFn(self.gate))
        object.__setattr__(self, "rate", RateFn(self.rate))
        object.__setattr__(self, "gate_normalizer", float(self.gate_normalizer))
        validate_spec(self)


@dataclass(frozen=True)
class KernelOptions:
    """Every knob that changes generated code; part of the cache key."""

    chunk_size: int = 64  # BT: 16, 32 or 64 (the UT solve works on 16-row sub-blocks)
    dtype: str = "bf16"  # input dtype of q, k, v: bf16, fp16 or fp32; states are always fp32
    autotune: bool = True  # False: one fixed config (required under TRITON_INTERPRET=1)
    num_warps: int = 4  # fixed config (autotune=False)
    num_stages: int = 2  # fixed config (autotune=False)
    block_v: int = 64  # fixed BV (autotune=False); clipped to the padded V
    block_k: int = 64  # fixed BK of the output kernel (autotune=False); clipped to padded K
    solve_precision: str = "ieee"  # tl.dot precision of the fp32 UT-solve merges

    def __post_init__(self) -> None:
        validate_options(self)


DTYPES = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}
CHUNK_SIZES = (16, 32, 64)
SOLVE_PRECISIONS = ("ieee", "tf32x3", "tf32")


def validate_spec(spec: KernelSpec) -> None:
    """Raise SpecError when the spec names an impossible or unsupported combination."""
    if not spec.name.isidentifier() or keyword.iskeyword(spec.name):
        raise SpecError(f"KernelSpec.name must be a Python identifier, got {spec.name!r}")
    if spec.gate is not GateFn.LOG and not spec.transition.has_token_gate:
        raise SpecError(
            f"gate={spec.gate.value} needs a per-token gate input, but transition "
            f"{spec.transition.value} has none; use GateFn.LOG"
        )
    if spec.gate is GateFn.MAMBA and spec.transition is Transition.DIAGONAL_DECAY:
        raise SpecError("gate=mamba is a per-head gate; diagonal_decay supports log and "
                        "logsigmoid_scaled")
    if spec.l2norm_qk and spec.transition is Transition.DIAGONAL_DECAY:
        raise SpecError("l2norm_qk is not supported with diagonal_decay (its backward splits the "
                        "key dimension across programs, so no program sees a whole row)")
    if spec.rate is not RateFn.RAW and not spec.transition.is_delta:
        raise SpecError(f"rate={spec.rate.value} only applies to delta transitions, "
                        f"not {spec.transition.value}")
    if not (math.isfinite(spec.gate_normalizer) and spec.gate_normalizer > 0):
        raise SpecError(f"gate_normalizer must be a positive finite number, "
                        f"got {spec.gate_normalizer}")


def validate_options(options: KernelOptions) -> None:
    """Raise SpecError for options the templates cannot render."""
    if options.chunk_size not in CHUNK_SIZES:
        raise SpecError(f"chunk_size must be one of {CHUNK_SIZES}, got {options.chunk_size}")
    if options.dtype not in DTYPES:
        raise SpecError(f"dtype must be one of {sorted(DTYPES)}, got {options.dtype!r}")
    if options.solve_precision not in SOLVE_PRECISIONS:
        raise SpecError(f"solve_precision must be one of {SOLVE_PRECISIONS}, "
                        f"got {options.solve_precision!r}")
    for field_name in ("num_warps", "block_v", "block_k"):
        value = getattr(options, field_name)
        if value < 1 or value & (value - 1):
            raise SpecError(f"{field_name} must be a power of two, got {value}")
    if options.block_v < 16 or options.block_k < 16:
        raise SpecError("block_v and block_k must be at least 16 (tl.dot's smallest tile)")
    if options.num_stages < 1:
        raise SpecError(f"num_stages must be positive, got {options.num_stages}")


def describe(obj: KernelSpec | KernelOptions) -> str:
    """A stable one-line text of a spec or options (enum values, not reprs)."""
    parts = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        parts.append(f"{f.name}={value.value if isinstance(value, Enum) else value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def spec_hash(spec: KernelSpec, options: KernelOptions) -> str:
    """16 hex digits naming (generator version, spec, options); same inputs, same hash."""
    text = f"linarch.kernels/{GENERATOR_VERSION}|{describe(spec)}|{describe(options)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
