"""Render a KernelSpec + KernelOptions into the text of one standalone Python module.

The Jinja templates in `templates/` hold the file skeleton; this module turns the spec into the
few facts the templates branch on (`template_context`), renders with StrictUndefined, and checks
the result (it parses as Python and no template syntax is left) before anyone uses it.
"""

from __future__ import annotations

import ast
import functools
import os
import tempfile
from pathlib import Path

import jinja2

from .spec import (
    DTYPES,
    GENERATOR_VERSION,
    GateFn,
    KernelOptions,
    KernelSpec,
    RateFn,
    Transition,
    describe,
    spec_hash,
)

TEMPLATE_DIR = Path(__file__).parent / "templates"
SUB_BLOCK = 16  # rows of a UT-solve sub-block (and tl.dot's smallest tile)

_TRANSITION_MATH = {
    Transition.IDENTITY: "I",
    Transition.SCALAR_DECAY: "exp(g_t) I",
    Transition.CONSTANT_DECAY: "gamma_h I",
    Transition.DIAGONAL_DECAY: "Diag(exp(g_t))",
    Transition.DELTA: "I - beta_t k_t k_t^T",
    Transition.GATED_DELTA: "exp(g_t) (I - beta_t k_t k_t^T)",
    Transition.CHANNEL_GATED_DELTA: "Diag(exp(g_t)) (I - beta_t k_t k_t^T)",
    Transition.IPLR: "exp(g_t) I - beta_t p_t k_t^T",
    Transition.DPLR: "Diag(exp(g_t)) + a_t b_t^T",
}
_GATE_KIND = {
    Transition.IDENTITY: "none",
    Transition.DELTA: "none",
    Transition.SCALAR_DECAY: "scalar",
    Transition.GATED_DELTA: "scalar",
    Transition.IPLR: "scalar",
    Transition.CONSTANT_DECAY: "const",
    Transition.DIAGONAL_DECAY: "diag",
    Transition.CHANNEL_GATED_DELTA: "diag",
    Transition.DPLR: "diag",
}
# the UT/WY family: (log-decay per row: none / scalar / channel, read key input, state read
# before the row's decay, micro rows per token in the kernels)
_UT_FORM = {
    Transition.DELTA: ("none", "", False),
    Transition.GATED_DELTA: ("scalar", "", False),
    Transition.CHANNEL_GATED_DELTA: ("channel", "", False),
    Transition.IPLR: ("scalar", "p", True),
    Transition.DPLR: ("channel", "r", True),
}


class RenderError(RuntimeError):
    """The templates produced text that is not a valid module (a generator bug)."""


def _inputs(spec: KernelSpec) -> list[tuple[str, str, str]]:
    """(name, shape expression, doc line) of the inputs after q, k, v, in signature order."""
    t = spec.transition
    kind = _GATE_KIND[t]
    n = spec.micro_steps
    rows = "T" if n == 1 else f"T * {n}"
    gate_doc = {
        GateFn.LOG: "log-decay (<= 0)",
        GateFn.LOGSIGMOID_SCALED: f"raw gate a; log-decay = logsigmoid(a) / {spec.gate_normalizer}",
        GateFn.MAMBA: "raw gate a; log-decay = -exp(A_log) * softplus(a + dt_bias)",
    }[spec.gate]
    out: list[tuple[str, str, str]] = []
    if t is Transition.IPLR:
        out.append(("p", "(B, T, H, K)", "p [B, T, H, K]: the read key (S_{t-1} p_t is replaced)"))
    if t is Transition.DPLR:
        out.append(("a", "(B, T, H, K)", "a [B, T, H, K]: the read vector (S_{t-1} a_t)"))
        out.append(("b", "(B, T, H, K)", "b [B, T, H, K]: the write vector of S_{t-1} a_t"))
    if kind == "scalar":
        out.append(("g", "(B, T, H)", f"g [B, T, H]: {gate_doc}"))
    elif kind == "diag":
        out.append(("g", "(B, T, H, K)", f"g [B, T, H, K]: per-key-channel {gate_doc}"))
    elif kind == "const":
        out.append(("g_gamma", "(H,)", "g_gamma [H]: log gamma_h, the constant per-head decay"))
    if t.has_rate:
        shape = f"[B, {rows.replace(' * ', '')}, H]" if n > 1 else "[B, T, H]"
        rate_doc = {
            RateFn.RAW: f"beta {shape}: the delta-rule rate",
            RateFn.SIGMOID: f"beta {shape}: raw rate b; beta = sigmoid(b)",
            RateFn.TWO_SIGMOID: f"beta {shape}: raw rate b; beta = 2 sigmoid(b)",
        }[spec.rate]
        out.append(("beta", f"(B, {rows}, H)", rate_doc))
    if spec.gate is GateFn.MAMBA:
        out.append(("A_log", "(H,)", "A_log [H]: log of the per-head decay rate"))
        out.append(("dt_bias", "(H,)", "dt_bias [H]: bias added to the raw gate"))
    return out


def input_names(spec: KernelSpec) -> tuple[str, ...]:
    """The inputs `chunk_<name>` takes after q, k, v, in order (e.g. ("g", "beta", "A_log",
    "dt_bias") for a gated delta rule with the Mamba gate); then come scale, initial_state,
    output_final_state, cu_seqlens."""
    return tuple(name for name, _, _ in _inputs(spec))


def input_shapes(spec: KernelSpec) -> dict[str, str]:
    """Shape expressions (in B, T, H, K) of the inputs after q, k, v; k and v are
    (B, T * micro_steps, H, K) and (B, T * micro_steps, H, V)."""
    return {name: shape for name, shape, _ in _inputs(spec)}


def _public_doc(spec: KernelSpec, inputs: list[tuple[str, str, str]]) -> str:
    t = spec.transition
    n = spec.micro_steps
    if t is Transition.DPLR:
        b_t = ", B_t = v_t k_t^T."
    elif t.has_rate:
        b_t = ", B_t = beta_t v_t k_t^T."
    else:
        b_t = ", B_t = v_t k_t^T."
    lines = [
        f"Chunked {t.value} recurrence `{spec.name}`: S_t = S_{{t-1}} A_t + B_t, o_t = S_t q_t,",
        f"A_t = {_TRANSITION_MATH[t]}" + b_t,
    ]
    if n > 1:
        lines += [f"Each token applies {n} such micro-steps (k, v, beta rows in '(t n)' order), "
                  "the gate once", "before the first; q reads after the last."]
    lines += [
        "",
        "Args:",
        "    q: [B, T, H, K]" + (" (L2-normalised per head inside the kernels)"
                               if spec.l2norm_qk else ""),
        f"    k: [B, {'T' if n == 1 else f'{n}T'}, H, K]"
        + (" (L2-normalised per head inside the kernels)" if spec.l2norm_qk else ""),
        f"    v: [B, {'T' if n == 1 else f'{n}T'}, H, V]",
    ]
    lines += [f"    {doc}" for _, _, doc in inputs]
    lines += [
        "    scale: multiplies q (default K ** -0.5)",
        "    initial_state: [N, H, K, V] (N = B, or the number of packed sequences)",
        "    output_final_state: also return the final state",
        "    cu_seqlens: [N + 1] token boundaries of sequences packed along T (then B must be 1)",
    ]
    return "\n".join(lines)


def _summaries(spec: KernelSpec, prologue: str) -> tuple[str, str]:
    """(forward, backward) one-line descriptions of the kernel pipeline."""
    if not spec.transition.uses_wy:
        return ("inter-chunk state pass -> output",
                "recomputes h, then state gradients -> input gradients")
    forward = (f"{prologue}T = (I + L)^-1 (intra) -> W, U (wu) -> inter-chunk state pass -> "
               "output")
    backward = ("W, U and h recomputed from the saved T -> dv_local -> state gradients -> "
                "dq, dk, dW (dqkw) -> WY backward -> " + ("prologue gradients" if prologue
                                                          else "done"))
    return forward, backward


def template_context(spec: KernelSpec, options: KernelOptions) -> dict:
    """The facts the templates branch on; everything else in the text is fixed."""
    t = spec.transition
    kind = _GATE_KIND[t]
    inputs = _inputs(spec)
    fp32 = options.dtype == "fp32"
    decay, read, rbd = _UT_FORM.get(t, ("none", "", False))
    micro = 2 if t is Transition.DPLR else spec.micro_steps
    prologue = t.uses_wy and (decay != "none" or spec.rate is not RateFn.RAW)
    parts = (["gate"] if decay != "none" else []) + (["rate"] if spec.rate is not RateFn.RAW
                                                     else []) + (["L2 norm"] if spec.l2norm_qk
                                                                 else [])
    forward, backward = _summaries(spec, f"{' + '.join(parts)} prologue -> " if parts else "")
    core = [name for name, _, _ in inputs]
    if t is Transition.DPLR:
        core = ["r", "g", "beta"]  # the micro-row form the entry point builds
    return {
        "generator_version": GENERATOR_VERSION,
        "spec_text": describe(spec),
        "options_text": describe(options),
        "hash": spec_hash(spec, options),
        "name": spec.name,
        "class_name": "".join(part.capitalize() or "_" for part in spec.name.split("_")),
        "transition": t.value,
        "transition_math": _TRANSITION_MATH[t],
        "forward_summary": forward,
        "backward_summary": backward,
        "uses_wy": t.uses_wy,
        "gate_kind": kind,
        "gated": kind in ("scalar", "const"),
        "gate_fn": spec.gate.name,
        "gate_math": {GateFn.LOG: "g",
                      GateFn.LOGSIGMOID_SCALED: f"logsigmoid(g) / {spec.gate_normalizer}",
                      GateFn.MAMBA: "-exp(A_log) softplus(g + dt_bias)"}[spec.gate],
        "inv_normalizer": repr(1.0 / spec.gate_normalizer),
        "rate": spec.rate.name,
        "l2norm": spec.l2norm_qk,
        "l2_eps": "1e-6",
        # the UT/WY family
        "decay": decay,
        "read": bool(read),
        "read_name": read,
        "rbd": rbd,
        "micro": micro,
        "public_micro": spec.micro_steps,
        "prologue": prologue,
        "core_inputs": core,
        "BT": options.chunk_size,
        "NC": options.chunk_size // SUB_BLOCK,
        "dtype_expr": DTYPES[options.dtype],
        "dot_kw": ', input_precision="ieee"' if fp32 else "",
        "solve_kw": f', input_precision="{options.solve_precision}"',
        "autotune": options.autotune,
        "num_warps": options.num_warps,
        "num_stages": options.num_stages,
        "block_v": options.block_v,
        "block_k": options.block_k,
        "inputs": [name for name, _, _ in inputs],
        "input_shapes": [(name, shape) for name, shape, _ in inputs],
        "public_doc": _public_doc(spec, inputs),
    }


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between processes (keyed by the templates' text), so that a
    fresh process renders a file in tens of milliseconds; none where the folder is not
    writable."""
    user = os.environ.get("USER") or str(os.getuid() if hasattr(os, "getuid") else "user")
    folder = Path(tempfile.gettempdir()) / f"linarch-kernels-{user}" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["format_grad"] = lambda name: f"d{name}"
    return env


def check_rendered(source: str, label: str) -> None:
    """Raise RenderError unless `source` parses as Python with no template syntax left."""
    for marker in ("{{", "{%", "{#"):
        if marker in source:
            line = next(i for i, text in enumerate(source.splitlines(), 1) if marker in text)
            raise RenderError(f"{label}: template syntax {marker!r} left at line {line}")
    try:
        ast.parse(source, filename=label)
    except SyntaxError as error:
        raise RenderError(f"{label}: generated code does not parse: {error}") from error


def render_kernels(spec: KernelSpec, options: KernelOptions | None = None) -> str:
    """The full Python source of the kernel module for `spec`; same inputs, same bytes."""
    options = options or KernelOptions()
    source = _environment().get_template("module.py.j2").render(**template_context(spec, options))
    check_rendered(source, f"<linarch kernels {spec.name}>")
    return source
