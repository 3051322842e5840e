"""Turn a mixer's stored DSL source back into a layer class.

A checkpoint stores the mixer as source text, never as pickled code, so loading compiles again.
The compiler is reached through one replaceable function so that tests (and tools that hold
hand-written layers) can point the models at other layer classes without touching the compiler.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn

LayerResolver = Callable[[str], type[nn.Module]]


def compile_source(source: str) -> type[nn.Module]:
    """The default resolver: the layer class of the DSL source's one compile result."""
    import linarch

    build = getattr(linarch, "build", None)
    if build is None:
        raise RuntimeError(
            "linarch.build is not available: install the compiler or set a layer resolver "
            "with linarch.models.set_layer_resolver"
        )
    return build(source, target=linarch.default_target()).layer


_resolver: LayerResolver = compile_source
_cache: dict[tuple[int, str], type[nn.Module]] = {}


def set_layer_resolver(resolver: LayerResolver | None) -> LayerResolver:
    """Install `resolver` (None restores the compiler) and return the previous one."""
    global _resolver
    previous = _resolver
    _resolver = resolver or compile_source
    _cache.clear()
    return previous


@contextmanager
def use_layer_resolver(resolver: LayerResolver) -> Iterator[None]:
    """Use `resolver` inside the `with` block only."""
    previous = set_layer_resolver(resolver)
    try:
        yield
    finally:
        set_layer_resolver(previous)


def resolve_layer_class(source: str) -> type[nn.Module]:
    """The layer class for `source`, compiled once per source text and resolver."""
    if not source:
        raise ValueError("the config holds no mixer_source: cannot rebuild the sequence mixer")
    key = (id(_resolver), hashlib.sha256(source.encode("utf-8")).hexdigest())
    if key not in _cache:
        _cache[key] = _resolver(source)
    return _cache[key]
