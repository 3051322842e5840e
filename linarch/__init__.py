"""linarch: a compiler and search system for linear-attention architectures.

    linarch.check(path_or_source)    -> list of diagnostics
    linarch.analyze(path_or_source)  -> Analysis (classes, costs, structural hash)
    linarch.show(path_or_source)     -> what the compiler understood, as text
    linarch.compile(path_or_source, target="torch") -> the layer class
"""

from linarch.api import (
    Analysis,
    analyze,
    check,
    compile,
    format_source,
    generate,
    load_source,
    show,
)
from linarch.dsl.diagnostics import Diagnostic, LinarchError

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "Diagnostic",
    "LinarchError",
    "analyze",
    "check",
    "compile",
    "generate",
    "format_source",
    "load_source",
    "show",
]
