"""linarch.kernels: the Triton backend's kernel generator.

A KernelSpec (the transition class of the recurrence and its fused prologue) plus KernelOptions
(chunk size, dtype, tuning) render into one standalone Python module of Triton kernels, forward
and backward, that imports only torch and triton:

    source = render_kernels(spec, options)      # the module text
    module = load_kernels(spec, options)        # rendered, written, imported; cached
    o, final_state = getattr(module, f"chunk_{spec.name}")(q, k, v, *extra, scale=None,
                                                           initial_state=None,
                                                           output_final_state=False,
                                                           cu_seqlens=None)

where `extra` are the tensors named by `input_names(spec)` (gate, rate, gate parameters).
"""

from .loader import load_kernels, write_kernels
from .render import RenderError, input_names, render_kernels
from .spec import GateFn, KernelOptions, KernelSpec, RateFn, SpecError, Transition, spec_hash

__all__ = [
    "GateFn",
    "KernelOptions",
    "KernelSpec",
    "RateFn",
    "RenderError",
    "SpecError",
    "Transition",
    "input_names",
    "load_kernels",
    "render_kernels",
    "spec_hash",
    "write_kernels",
]
