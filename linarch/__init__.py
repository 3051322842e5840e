"""linarch: a compiler and search system for linear-attention architectures.

    linarch.check(path_or_source)    -> list of diagnostics
    linarch.analyze(path_or_source)  -> Analysis (classes, costs, structural hash)
    linarch.show(path_or_source)     -> what the compiler understood, as text
    linarch.build(path_or_source, target="torch") -> Compiled (analysis, text, layer, hash)
    linarch.compile(path_or_source, target="torch") -> the layer class
    linarch.generate(path_or_source, target="torch") -> the generated source text
    linarch.mutate(source, seed) / linarch.crossover(a, b, seed) -> new programs

The API is imported on first use, so that processes which only need a submodule (evaluation
workers, the search's executors) do not pay for the compiler's imports.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "Analysis": "linarch.api",
    "analyze": "linarch.api",
    "backend": "linarch.api",
    "build": "linarch.api",
    "check": "linarch.api",
    "compile": "linarch.api",
    "Compiled": "linarch.api",
    "CompileOptions": "linarch.api",
    "crossover": "linarch.api",
    "default_target": "linarch.api",
    "example_path": "linarch.api",
    "format_source": "linarch.api",
    "generate": "linarch.api",
    "load_source": "linarch.api",
    "mutate": "linarch.api",
    "options": "linarch.api",
    "Mutation": "linarch.dsl.mutate",
    "MutationError": "linarch.dsl.mutate",
    "show": "linarch.api",
    "Diagnostic": "linarch.dsl.diagnostics",
    "LinarchError": "linarch.dsl.diagnostics",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'linarch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
