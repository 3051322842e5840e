"""What a generated kernel module computes (KernelSpec) and how it is generated (KernelOptions).

The compiler derives a KernelSpec from a `.lin` program: the transition class of the recurrence
S_t = S_{t-1} A_t + B_t (S is [V, K] as in the language; the kernels keep h = S^T, [K, V], as
flash-linear-attention does) and the element-wise prologue that the kernels apply to their raw
inputs (gate activation, rate activation, L2 norm of q and k). KernelOptions holds every knob
that changes the generated text (chunk size, input dtype, tuning). Both are frozen and hashable:
together they are the cache key of a rendered module, and `spec_hash` names the rendered file.

What each class takes (the entry point is `chunk_<name>(q, k, v, *inputs, scale=None,
initial_state=None, output_final_state=False, cu_seqlens=None)`; `input_names(spec)` in
render.py lists `inputs` in order). Shapes use B batch, T tokens, H heads, K key and V value
head dims; every tensor is [B, T, H, ...] (fla's layout, not head-first); n = micro_steps; beta
is [B,T,H] where no shape is given:

| transition | A_t (S layout) | B_t | inputs after q, k, v |
|---|---|---|---|
| identity | I | v k^T | - |
| scalar_decay | e^{g_t} I | v k^T | g [B,T,H] |
| constant_decay | gamma_h I | v k^T | g_gamma [H] (log gamma, a parameter) |
| diagonal_decay | Diag(e^{g_t}) | v k^T | g [B,T,H,K] |
| delta | prod_i (I - b_i k_i k_i^T) | sum of b_i v_i k_i^T | beta [B,nT,H] |
| gated_delta | e^{g_t} prod_i (I - b_i k_i k_i^T) | (same) | g [B,T,H], beta [B,nT,H] |
| channel_gated_delta | Diag(e^{g_t}) (I - b_t k_t k_t^T) | b_t v_t k_t^T | g [B,T,H,K], beta |
| iplr | e^{g_t} I - b_t p_t k_t^T | b_t v_t k_t^T | p [B,T,H,K], g [B,T,H], beta |
| dplr | Diag(e^{g_t}) + a_t b_t^T | v_t k_t^T | a [B,T,H,K], b [B,T,H,K], g [B,T,H,K] |

- g is a log-decay (<= 0 after the gate function; the kernels exponentiate only differences of
  its chunk-local cumulative sums, which assumes g <= 0). With GateFn.LOG it is passed as is.
- beta is the rate b_t (after the rate function). With micro_steps = n > 1 (products of
  Householder micro-steps, Gated DeltaProduct), k, v and beta carry n rows per token in
  '(t n)' order ([B, n*T, H, ...]); the gate applies once per token before its first micro-step
  and q reads the state after the last one.
- iplr (Comba): the read key p multiplies the state before this token's decay
  (S_{t-1} p, not (e^{g_t} S_{t-1}) p), as fla's chunk_comba and its naive_chunk_comba do.
- dplr (RWKV-7): the state is read before the decay (S_{t-1} a); RWKV-7 passes a = -kk,
  b = kk * a_gate (fla's dplr_recurrence: alpha = a, beta = b, gk = g). No rate input.
- the prologue flags say what the kernels do to raw inputs before the recurrence, so the
  compiler maps these IR shapes onto them: `l2norm(x)` on both the readout query and the key
  -> l2norm_qk; `logsigmoid(a) / c` -> GateFn.LOGSIGMOID_SCALED with gate_normalizer c;
  `-exp(A_log) * softplus(a + dt_bias)` with A_log, dt_bias per head -> GateFn.MAMBA (then
  A_log [H] and dt_bias [H] follow the other inputs); `sigmoid(b)` / `2 * sigmoid(b)` as the
  rate -> RateFn.SIGMOID / TWO_SIGMOID. Anything else is computed by the caller and passed in
  with GateFn.LOG and RateFn.RAW.
- initial_state and the final state are [N, H, K, V] in fp32 (N = B, or the number of packed
  sequences with cu_seqlens, whose boundaries count tokens).
"""

from __future__ import annotations

import hashlib
import keyword
import math
from dataclasses import dataclass, fields
from enum import Enum

GENERATOR_VERSION = "2"


class Transition(Enum):
    """The structured class of the state transition A_t; each licenses one chunk algorithm."""

    IDENTITY = "identity"  # A_t = I (linear attention)
    SCALAR_DECAY = "scalar_decay"  # A_t = exp(g_t) I, g [B,T,H] (simple GLA, Mamba2)
    CONSTANT_DECAY = "constant_decay"  # A_t = gamma_h I, log gamma [H] (RetNet)
    DIAGONAL_DECAY = "diagonal_decay"  # A_t = Diag(exp(gk_t)), gk [B,T,H,K] (GLA)
    DELTA = "delta"  # A_t = I - beta_t k_t k_t^T (DeltaNet)
    GATED_DELTA = "gated_delta"  # A_t = exp(g_t) (I - beta_t k_t k_t^T) (Gated DeltaNet)
    CHANNEL_GATED_DELTA = "channel_gated_delta"  # A_t = Diag(exp(g_t)) (I - b k k^T) (KDA)
    IPLR = "iplr"  # A_t = exp(g_t) I - beta_t p_t k_t^T (Comba)
    DPLR = "dplr"  # A_t = Diag(exp(g_t)) + a_t b_t^T, B_t = v_t k_t^T (RWKV-7)

    @property
    def is_delta(self) -> bool:
        """The plain and scalar-gated delta rule (the classes with micro-step products)."""
        return self in (Transition.DELTA, Transition.GATED_DELTA)

    @property
    def uses_wy(self) -> bool:
        """True for the classes whose chunk form needs the UT transform (a triangular solve)
        and the WY representation: every transition with a rank-one term."""
        return self in (Transition.DELTA, Transition.GATED_DELTA,
                        Transition.CHANNEL_GATED_DELTA, Transition.IPLR, Transition.DPLR)

    @property
    def has_rate(self) -> bool:
        """True when the transition takes a rate beta that a RateFn activates."""
        return self in (Transition.DELTA, Transition.GATED_DELTA,
                        Transition.CHANNEL_GATED_DELTA, Transition.IPLR)

    @property
    def has_token_gate(self) -> bool:
        """True when the transition reads a per-token gate tensor that a GateFn activates."""
        return self in (Transition.SCALAR_DECAY, Transition.DIAGONAL_DECAY,
                        Transition.GATED_DELTA, Transition.CHANNEL_GATED_DELTA,
                        Transition.IPLR, Transition.DPLR)

    @property
    def per_channel_gate(self) -> bool:
        """True when the gate is [B, T, H, K] (one log-decay per key channel)."""
        return self in (Transition.DIAGONAL_DECAY, Transition.CHANNEL_GATED_DELTA,
                        Transition.DPLR)


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
    micro_steps: int = 1  # Householder micro-steps per token (delta and gated_delta only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "transition", Transition(self.transition))
        object.__setattr__(self, "gate", GateFn(self.gate))
        object.__setattr__(self, "rate", RateFn(self.rate))
        object.__setattr__(self, "gate_normalizer", float(self.gate_normalizer))
        validate_spec(self)


@dataclass(frozen=True)
class KernelOptions:
    """Every knob that changes generated code; part of the cache key.

    The rendered file does not depend on the environment it was generated in: `autotune` says
    whether a kernel may time its configs, and the file decides at import whether it can (not
    under TRITON_INTERPRET=1, which has no GPU to time on). Where it cannot, or autotune is
    False, every kernel runs the fixed config below.
    """

    chunk_size: int = 64  # BT: 16, 32 or 64 (the UT solve works on 16-row sub-blocks)
    dtype: str = "bf16"  # input dtype of q, k, v: bf16, fp16 or fp32; states are always fp32
    autotune: bool = True  # autotune each kernel on a GPU; False: the fixed config everywhere
    # the fixed config: None keeps each kernel's first autotune config (spill-free at sm_90)
    num_warps: int | None = None
    num_stages: int | None = None
    block_v: int | None = None  # BV, clipped to the padded V
    block_k: int | None = None  # BK, clipped to the padded K
    solve_precision: str = "ieee"  # tl.dot precision of the fp32 UT-solve merges

    def __post_init__(self) -> None:
        validate_options(self)


# the dtype the kernels take their inputs in, as a torch expression in the generated module;
# "auto" is chosen when the module is imported (bf16 on a GPU; fp32 under TRITON_INTERPRET=1,
# which computes bf16 wrong), so one file behaves the same wherever it was generated
DTYPES = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32",
          "auto": "torch.float32 if INTERPRET else torch.bfloat16"}
CHUNK_SIZES = (16, 32, 64)
MAX_MICRO_STEPS = 8
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
    t = spec.transition
    if spec.gate is GateFn.MAMBA and t.per_channel_gate:
        raise SpecError(f"gate=mamba is a per-head gate (A_log [H], dt_bias [H]); "
                        f"{t.value} has a per-channel gate: use log or logsigmoid_scaled")
    if spec.gate is not GateFn.LOG and t is Transition.DPLR:
        raise SpecError("dplr takes its log-decay as is (gate=log): compute RWKV-7's "
                        "w = -e^-0.5 sigmoid(...) before the kernels")
    if spec.l2norm_qk and t is Transition.DIAGONAL_DECAY:
        raise SpecError("l2norm_qk is not supported with diagonal_decay (its backward splits the "
                        "key dimension across programs, so no program sees a whole row)")
    if spec.l2norm_qk and t in (Transition.IPLR, Transition.DPLR):
        raise SpecError(f"l2norm_qk is not supported with {t.value}: normalise q, k (and the "
                        f"other key vectors) before the kernels")
    if spec.rate is not RateFn.RAW and not t.has_rate:
        raise SpecError(f"rate={spec.rate.value} only applies to transitions with a rate beta, "
                        f"not {t.value}")
    if not 1 <= spec.micro_steps <= MAX_MICRO_STEPS:
        raise SpecError(f"micro_steps must be between 1 and {MAX_MICRO_STEPS}, "
                        f"got {spec.micro_steps}")
    if spec.micro_steps > 1 and not t.is_delta:
        raise SpecError(f"micro_steps > 1 (products of Householder steps) needs transition delta "
                        f"or gated_delta, not {t.value}")
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
    for field_name in ("num_warps", "block_v", "block_k", "num_stages"):
        value = getattr(options, field_name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise SpecError(f"{field_name} must be an int or None, got {value!r}")
    for field_name in ("num_warps", "block_v", "block_k"):
        value = getattr(options, field_name)
        if value is not None and (value < 1 or value & (value - 1)):
            raise SpecError(f"{field_name} must be a power of two, got {value}")
    if any(b is not None and b < 16 for b in (options.block_v, options.block_k)):
        raise SpecError("block_v and block_k must be at least 16 (tl.dot's smallest tile)")
    if options.num_stages is not None and options.num_stages < 1:
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
