"""Structural identity of mixers: a Merkle hash over the graph that ignores names and layout.

Two programs that compute the same graph (whatever their binding names, parameter names,
statement order, comments or formatting) hash equal; the search loop uses this to never train
the same architecture twice. ``wl_hash`` (Weisfeiler-Lehman, networkx) gives a coarser
similarity for near-duplicates.
"""

from __future__ import annotations

import hashlib

import networkx as nx

from linarch.dsl.ir import ROOTS, Module, Node, Op


def _label(node: Node) -> str:
    """What a node computes, without its binding name (hyper-parameters keep theirs: they are
    the layer's constructor interface)."""
    attrs = ",".join(f"{k}={v!r}" for k, v in node.attrs)
    name = node.name if node.op is Op.HPARAM else ""
    return f"{node.op.value}|{attrs}|{','.join(node.keys)}|{name}"


def node_hashes(module: Module) -> dict[int, str]:
    out: dict[int, str] = {}
    for i, node in module.nodes():
        if node.op is Op.ALIAS:
            out[i] = out[node.args[0]]
            continue
        h = hashlib.sha256(_label(node).encode())
        for a in node.args:
            h.update(out[a].encode())
        out[i] = h.hexdigest()
    return out


def structural_hash(module: Module) -> str:
    hashes = node_hashes(module)
    roots = sorted(hashes[i] for i, n in module.nodes() if n.op in ROOTS)
    h = hashlib.sha256(f"complexity={module.complexity}".encode())
    for r in roots:
        h.update(r.encode())
    return h.hexdigest()[:16]


def label_graph(module: Module) -> nx.DiGraph:
    """The graph with names dropped and aliases collapsed, each node labelled by what it does."""
    g = nx.DiGraph()
    for i, node in module.nodes():
        if node.op is Op.ALIAS:
            continue
        g.add_node(i, label=_label(node))
    for i, node in module.nodes():
        if node.op is Op.ALIAS:
            continue
        for a in node.args:
            while module.node(a).op is Op.ALIAS:
                a = module.node(a).args[0]
            g.add_edge(a, i)
    return g


def wl_hash(module: Module, iterations: int = 3) -> str:
    return nx.weisfeiler_lehman_graph_hash(label_graph(module), node_attr="label",
                                           iterations=iterations)


def wl_subtree_hashes(module: Module, iterations: int = 3) -> dict[int, list[str]]:
    return nx.weisfeiler_lehman_subgraph_hashes(label_graph(module), node_attr="label",
                                                iterations=iterations)
