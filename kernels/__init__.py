"""linarch.kernels: the Triton backend's kernel generator.

A KernelSpec (the transition class of the recurrence and its fused prologue) plus KernelOptions
(chunk size, dtype, tuning) render into one standalone Python module of Triton kernels, forward
and backward, that imports only torch and triton:

    source = render_kernels(spec, options)      # the module text
    module = load_kernels(spec, options)        # rendered, written, imported; cached
    o, final_state = getattr(module, f"chunk_{spec.name}")(q, k, v, ...)
"""

from .loader import load_kernels, write_kernels
from .render import RenderError, render_kernels
from .spec import GateFn, KernelOptions, KernelSpec, RateFn, SpecError, Transition, spec_hash

__all__ = [
    "GateFn",
    "KernelOptions",
    "KernelSpec",
    "RateFn",
    "RenderError",
    "SpecError",
    "Transition",
    "load_kernels",
    "render_kernels",
    "spec_hash",
    "write_kernels",
]
