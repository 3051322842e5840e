"""Run fla's naive references in float64.

Every fla naive reference casts its inputs with `.float()` or `.to(torch.float32)` and builds
buffers with `dtype=torch.float`, so as written it can only be compared to 1e-6 or so. Tests that
want 1e-10 agreement run the same fla code under `promote_fp32_to_fp64()`, a TorchFunctionMode
that rewrites every request for float32 into a request for float64 (and makes float64 the default
dtype for factories that name no dtype). Nothing in fla is copied or edited; only the dtype
requests change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

_FP32 = torch.float32
_FP64 = torch.float64


def _swap(value: object) -> object:
    return _FP64 if value is _FP32 else value


class _PromoteFp32(TorchFunctionMode):
    """Turns `.float()`, `.to(torch.float32)` and `dtype=torch.float32` into float64."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.float:
            return args[0].to(_FP64)
        if "dtype" in kwargs:
            kwargs["dtype"] = _swap(kwargs["dtype"])
        if func is torch.Tensor.to:
            args = tuple(_swap(a) for a in args)
        return func(*args, **kwargs)


@contextlib.contextmanager
def promote_fp32_to_fp64() -> Iterator[None]:
    """Context in which fla's fp32-only references compute in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(_FP64)
    try:
        with _PromoteFp32():
            yield
    finally:
        torch.set_default_dtype(previous)


def precision_context(*tensors: torch.Tensor | None) -> contextlib.AbstractContextManager:
    """`promote_fp32_to_fp64()` when any given tensor is float64, else a no-op context."""
    if any(t is not None and t.dtype == _FP64 for t in tensors):
        return promote_fp32_to_fp64()
    return contextlib.nullcontext()
