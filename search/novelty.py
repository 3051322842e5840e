"""Near-duplicate detection on the IR graph, by Weisfeiler-Lehman subtree features.

ASI-Arch asked an LLM whether two motivations were the same idea. Here two programs are
compared by what they compute: every node of the IR graph gets Weisfeiler-Lehman subtree
hashes at depths 0..h (a node's label, then its label with its neighbours', ...), and the
similarity of two programs is the weighted Jaccard index of their feature multisets. Renaming
variables or reordering independent lines changes nothing; swapping a gate or adding a path
changes the features around it. Exact duplicates are caught earlier by the compiler's
structural hash.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

import networkx as nx

_IGNORED_ATTRS = frozenset({"default"})


def node_label(node: Any) -> str:
    """str(op) plus the node's scalar attributes (the called function, the binary operator,
    a literal's value), but not hyper-parameter defaults: sigmoid vs silu, + vs *, and a conv
    width of 3 vs 4 all count as differences; hidden_size = 512 vs 1024 does not."""
    parts = [str(getattr(node, "op", node))]
    for key, value in sorted(getattr(node, "attrs", ()) or (), key=lambda kv: str(kv[0])):
        if key not in _IGNORED_ATTRS and isinstance(value, (str, int, float, bool)):
            parts.append(f"{key}={value}")
    return "|".join(parts)


def labelled(graph: Any) -> nx.DiGraph:
    """A plain DiGraph with a "label" on every node and edge (multi-edges merged)."""
    out = nx.DiGraph()
    for n, data in graph.nodes(data=True):
        out.add_node(n, label=node_label(data["node"]) if "node" in data else str(n))
    edge_labels: dict[tuple[Any, Any], list[str]] = {}
    for u, v, data in graph.edges(data=True):
        edge_labels.setdefault((u, v), []).append(str(data.get("index", "")))
    for (u, v), labels in edge_labels.items():
        out.add_edge(u, v, label=",".join(sorted(labels)))
    return out


def wl_features(graph: Any, iterations: int = 3) -> Counter[str]:
    """The multiset of WL subtree hashes (depth-tagged) over all nodes."""
    g = labelled(graph)
    with warnings.catch_warnings():  # networkx notes its v3.5 change of directed hashes
        warnings.simplefilter("ignore", UserWarning)
        per_node = nx.weisfeiler_lehman_subgraph_hashes(
            g, node_attr="label", edge_attr="label", iterations=iterations,
            include_initial_labels=True,
        )
    features: Counter[str] = Counter()
    for hashes in per_node.values():
        for depth, h in enumerate(hashes):
            features[f"{depth}:{h}"] += 1
    return features


def wl_graph_hash(graph: Any, iterations: int = 3) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return nx.weisfeiler_lehman_graph_hash(
            labelled(graph), node_attr="label", edge_attr="label", iterations=iterations
        )


def similarity(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Weighted Jaccard: sum of minimum counts over sum of maximum counts (1.0 = same)."""
    keys = set(a) | set(b)
    if not keys:
        return 1.0
    low = sum(min(a.get(k, 0), b.get(k, 0)) for k in keys)
    high = sum(max(a.get(k, 0), b.get(k, 0)) for k in keys)
    return low / high


class NoveltyIndex:
    """The feature multisets of programs seen so far; answers 'what is the nearest one?'"""

    def __init__(self) -> None:
        self._features: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self._features)

    def add(self, key: str, features: Mapping[str, int]) -> None:
        self._features[key] = dict(features)

    def nearest(self, features: Mapping[str, int]) -> tuple[str | None, float]:
        best_key, best = None, 0.0
        for key, other in self._features.items():
            s = similarity(features, other)
            if s > best or best_key is None:
                best_key, best = key, s
        return best_key, best
