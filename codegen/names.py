"""Python identifiers for IR values in generated code: readable, unique, never a keyword."""

from __future__ import annotations

from linarch.dsl.ir import Module, Op
from linarch.dsl.names import INTERFACE_RESERVED

# names the generated forward() defines itself; a binding that would shadow one of them, a
# Python or module name, or an nn.Module attribute (statics live on the layer) gets a `_` suffix
RESERVED = INTERFACE_RESERVED | frozenset({
    "B", "T", "x", "mask", "cache", "new_cache", "t", "positions", "offset", "output",
    "work_dtype",
})


def identifier(name: str) -> str:
    ident = name.replace(".", "_")
    if ident in RESERVED:
        ident += "_"
    return ident


def value_names(module: Module) -> dict[int, str]:
    """A unique Python name for every named value node (states get S, S_1, ... per micro-step)."""
    taken: set[str] = set(RESERVED)
    out: dict[int, str] = {}
    for i, node in module.nodes():
        if node.op in (Op.PARAM, Op.INPUT, Op.RETURN):
            continue
        if node.name is None:
            continue
        base = identifier(node.name)
        name = base
        n = 1
        while name in taken:
            name = f"{base}_{n}"
            n += 1
        taken.add(name)
        out[i] = name
    return out


def param_path(name: str) -> str:
    """``gk_proj.0`` -> ``self.gk_proj["0"]`` (dotted names live in nn.ModuleDicts)."""
    head, *rest = name.split(".")
    return "self." + head + "".join(f'["{part}"]' for part in rest)
