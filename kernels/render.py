"""Render a KernelSpec + KernelOptions into the text of one standalone Python module.

The Jinja templates in `templates/` hold the file skeleton; this module turns the spec into the
few facts the templates branch on (`template_context`), renders with StrictUndefined, and checks
the result (it parses as Python and no template syntax is left) before anyone uses it.
"""

from __future__ import annotations

import ast
import functools
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
}
_GATE_KIND = {
    Transition.IDENTITY: "none",
    Transition.DELTA: "none",
    Transition.SCALAR_DECAY: "scalar",
    Transition.GATED_DELTA: "scalar",
    Transition.CONSTANT_DECAY: "const",
    Transition.DIAGONAL_DECAY: "diag",
}


class RenderError(RuntimeError):
    """The templates produced text that is not a valid module (a generator bug)."""


def _inputs(spec: KernelSpec) -> list[tuple[str, str, str]]:
    """(name, shape expression, doc line) of the inputs after q, k, v, in signature order."""
    kind = _GATE_KIND[spec.transition]
    gate_doc = {
        GateFn.LOG: "log-decay (<= 0)",
        GateFn.LOGSIGMOID_SCALED: f"raw gate a; log-decay = logsigmoid(a) / {spec.gate_normalizer}",
        GateFn.MAMBA: "raw gate a; log-decay = -exp(A_log) * softplus(a + dt_bias)",
    }[spec.gate]
    rows: list[tuple[str, str, str]] = []
    if kind == "scalar":
        rows.append(("g", "(B, T, H)", f"g [B, T, H]: {gate_doc}"))
    elif kind == "diag":
        rows.append(("g", "(B, T, H, K)", f"g [B, T, H, K]: per-key-channel {gate_doc}"))
    elif kind == "const":
        rows.append(("g_gamma", "(H,)", "g_gamma [H]: log gamma_h, the constant per-head decay"))
    if spec.transition.is_delta:
        rate_doc = {
            RateFn.RAW: "beta [B, T, H]: the delta-rule rate",
            RateFn.SIGMOID: "beta [B, T, H]: raw rate b; beta = sigmoid(b)",
            RateFn.TWO_SIGMOID: "beta [B, T, H]: raw rate b; beta = 2 sigmoid(b)",
        }[spec.rate]
        rows.append(("beta", "(B, T, H)", rate_doc))
    if spec.gate is GateFn.MAMBA:
        rows.append(("A_log", "(H,)", "A_log [H]: log of the per-head decay rate"))
        rows.append(("dt_bias", "(H,)", "dt_bias [H]: bias added to the raw gate"))
    return rows


def input_names(spec: KernelSpec) -> tuple[str, ...]:
    """The inputs `chunk_<name>` takes after q, k, v, in order (e.g. ("g", "beta", "A_log",
    "dt_bias") for a gated delta rule with the Mamba gate); then come scale, initial_state,
    output_final_state, cu_seqlens."""
    return tuple(name for name, _, _ in _inputs(spec))


def _public_doc(spec: KernelSpec, inputs: list[tuple[str, str, str]]) -> str:
    lines = [
        f"Chunked {spec.transition.value} recurrence `{spec.name}`: "
        f"S_t = S_{{t-1}} A_t + B_t, o_t = S_t q_t,",
        f"A_t = {_TRANSITION_MATH[spec.transition]}"
        + (", B_t = beta_t v_t k_t^T." if spec.transition.is_delta else ", B_t = v_t k_t^T."),
        "",
        "Args:",
        "    q, k: [B, T, H, K]" + (" (L2-normalised per head inside the kernels)"
                                  if spec.l2norm_qk else ""),
        "    v: [B, T, H, V]",
    ]
    lines += [f"    {doc}" for _, _, doc in inputs]
    lines += [
        "    scale: multiplies q (default K ** -0.5)",
        "    initial_state: [N, H, K, V] (N = B, or the number of packed sequences)",
        "    output_final_state: also return the final state",
        "    cu_seqlens: [N + 1] boundaries of sequences packed along T (then B must be 1)",
    ]
    return "\n".join(lines)


def template_context(spec: KernelSpec, options: KernelOptions) -> dict:
    """The facts the templates branch on; everything else in the text is fixed."""
    kind = _GATE_KIND[spec.transition]
    inputs = _inputs(spec)
    fp32 = options.dtype == "fp32"
    recompute = "W, U, h" if spec.transition.is_delta else "h"
    if spec.transition.is_delta:
        forward = "UT transform (T, W, U) -> inter-chunk state pass -> output"
    else:
        forward = "inter-chunk state pass -> output"
    return {
        "generator_version": GENERATOR_VERSION,
        "spec_text": describe(spec),
        "options_text": describe(options),
        "hash": spec_hash(spec, options),
        "name": spec.name,
        "class_name": "".join(part.capitalize() or "_" for part in spec.name.split("_")),
        "transition_math": _TRANSITION_MATH[spec.transition],
        "forward_summary": forward,
        "recompute_summary": recompute,
        "is_delta": spec.transition.is_delta,
        "gate_kind": kind,
        "gated": kind in ("scalar", "const"),
        "gate_fn": spec.gate.name,
        "inv_normalizer": repr(1.0 / spec.gate_normalizer),
        "rate": spec.rate.name,
        "l2norm": spec.l2norm_qk,
        # the delta family's prep kernel stores 1/||q||, 1/||k|| for the kernels after it
        "norm_vectors": spec.l2norm_qk and spec.transition.is_delta,
        "l2_eps": "1e-6",
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


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
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
