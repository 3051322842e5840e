"""The IR: a networkx multigraph of frozen nodes over a closed set of ops, each with its span.

A node's operands are the ids in ``node.args`` (and, mirrored for graph algorithms, edges
``arg -> node`` with attribute ``index``). Ids are assigned in source order, so printing a module
and parsing it back gives the same ids and an equal graph (``graphs_equal``).

Values are per token unless the type pass proves them static: ``x`` is the layer input at token
t; a ``STATE`` node is the state before the token (S_{t-1}); the ``UPDATE`` of that state is S_t.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import networkx as nx

from linarch.dsl.source import Source, Span


class Op(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    INPUT = "input"  # x, the layer input at token t: [hidden_size]
    HPARAM = "hparam"  # a hyper-parameter (constructor keyword) with its default
    SEQLEN = "seqlen"  # T, the sequence length (only legal in declared super-linear mixers)
    CONST = "const"  # a literal number, string or boolean
    AXIS = "axis"  # `time` or `batch`, named in `over = ...`
    IDENTITY = "identity"  # I, the identity transition
    NEG = "neg"
    BINARY = "binary"  # attr op: + - * / @ **
    CALL = "call"  # attr fn: a builtin of linarch.dsl.builtins
    RESHAPE = "reshape"  # args: value, dims... (features viewed as [d1, d2, ...])
    PARAM = "param"  # attr kind: a parameter constructor of linarch.dsl.params; args: its arguments
    APPLY = "apply"  # args: param, inputs...: a parameter module applied to values
    STATE = "state"  # args: dims; the state before the token, S_{t-1}
    UPDATE = "update"  # args: state (or previous micro-step), new value; S_t
    ALIAS = "alias"  # `a = b`: a second name for a value
    RETURN = "return"  # the layer's output at token t
    LOSS = "loss"  # an auxiliary training loss, averaged over tokens


# ops whose nodes are effects (kept alive and hashed as roots)
ROOTS = (Op.RETURN, Op.LOSS, Op.UPDATE)


@dataclass(frozen=True)
class Node:
    op: Op
    args: tuple[int, ...] = ()
    keys: tuple[str, ...] = ()  # keyword of each arg, "" if positional; empty if all positional
    attrs: tuple[tuple[str, Any], ...] = ()
    name: str | None = None  # binding name (ignored by the structural hash)
    span: Span | None = field(default=None, compare=False)

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def key(self, i: int) -> str:
        return self.keys[i] if self.keys else ""

    def positional(self) -> tuple[int, ...]:
        return tuple(a for i, a in enumerate(self.args) if not self.key(i))

    def keyword(self, name: str) -> int | None:
        for i, a in enumerate(self.args):
            if self.key(i) == name:
                return a
        return None


@dataclass(frozen=True)
class Module:
    """One mixer: its name, the graph, its declared complexity and where it came from."""

    name: str
    graph: nx.MultiDiGraph
    source: Source
    complexity: str | None = None
    complexity_span: Span | None = None

    def node(self, i: int) -> Node:
        return self.graph.nodes[i]["node"]

    def ids(self) -> list[int]:
        return sorted(self.graph.nodes)

    def nodes(self, *ops: Op) -> list[tuple[int, Node]]:
        return [(i, self.node(i)) for i in self.ids() if not ops or self.node(i).op in ops]

    def users(self, i: int) -> list[int]:
        return sorted({v for _, v in self.graph.out_edges(i)})

    def hparams(self) -> list[tuple[int, Node]]:
        return self.nodes(Op.HPARAM)


class Builder:
    """Appends nodes in order; the only way nodes are created."""

    def __init__(self) -> None:
        self.graph = nx.MultiDiGraph()

    def add(self, node: Node) -> int:
        i = self.graph.number_of_nodes()
        self.graph.add_node(i, node=node)
        for index, a in enumerate(node.args):
            self.graph.add_edge(a, i, index=index)
        return i

    def replace(self, i: int, node: Node) -> None:
        """Swap a node in place (same operands); used to attach a binding name."""
        old = self.graph.nodes[i]["node"]
        if old.args != node.args:
            raise ValueError("replace must keep the operands")
        self.graph.nodes[i]["node"] = node


def verify(module: Module) -> list[str]:
    """What legal IR is; returns the violations (empty for legal IR).

    Used between passes in tests."""
    problems: list[str] = []
    g = module.graph
    ids = module.ids()
    if ids != list(range(len(ids))):
        problems.append("node ids are not 0..n-1")
    for i in ids:
        node = module.node(i)
        if not isinstance(node, Node):
            problems.append(f"node {i} is not a Node")
            continue
        if node.keys and len(node.keys) != len(node.args):
            problems.append(f"node {i}: keys and args differ in length")
        for a in node.args:
            if a >= i:
                problems.append(f"node {i}: operand {a} is not defined before it")
        edges = sorted((d["index"], u) for u, _, d in g.in_edges(i, data=True))
        if [u for _, u in edges] != list(node.args):
            problems.append(f"node {i}: edges do not mirror operands")
        if node.op is Op.UPDATE and module.node(node.args[0]).op not in (Op.STATE, Op.UPDATE):
            problems.append(f"node {i}: UPDATE of a non-state")
        if node.op is Op.APPLY and module.node(node.args[0]).op is not Op.PARAM:
            problems.append(f"node {i}: APPLY of a non-parameter")
    if not nx.is_directed_acyclic_graph(g):
        problems.append("graph has a cycle")
    return problems


def graphs_equal(a: Module, b: Module) -> bool:
    """Same nodes (spans ignored) with the same ids, and the same name and complexity."""
    if a.name != b.name or a.complexity != b.complexity:
        return False
    if a.ids() != b.ids():
        return False
    return all(a.node(i) == b.node(i) for i in a.ids())
