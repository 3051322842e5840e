"""Telling a new idea from a rewrite: structure (Weisfeiler-Lehman features of the IR) and
behaviour (the function a program computes).

ASI-Arch asked an LLM whether two motivations were the same idea. Here two programs are
compared by what they compute, three ways, each cheaper than training:

- The compiler's structural hash: the same graph and hyper-parameters under any names.
- Weisfeiler-Lehman features: every node of the IR graph gets subtree hashes at depths 0..h
  (a node's label, then its label with its neighbours'); the similarity of two programs is the
  weighted Jaccard index of their feature multisets, averaged over the depths. A node's label
  is its op with its attributes, hyper-parameter values included (a conv width of 3 vs 4, an
  `expand_v` that doubles the state and the head count are different programs), except the
  model width, which the evaluation sets itself. With one WL iteration, measured on DeltaNet:
  renaming 1.00, a hidden_size default 1.00, a hyper-parameter or one builtin changed
  0.93-0.95, a gate added 0.77, another family 0.40-0.51 (docs/search.md).
- A behavioural fingerprint (vet.py, in a worker): the layer's outputs on fixed inputs, at one
  width, with every parameter drawn from one seeded generic distribution. Two programs that
  compute the same function for all weights (a rewrite: `S @ q * c` vs `c * (S @ q)`, a
  reordered sum) give the same outputs; two different ideas almost never do.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

# hyper-parameters the evaluation sets itself (the width of the model): their defaults say
# nothing about the architecture
WIDTH_HPARAMS = frozenset({"hidden_size"})


def node_label(node: Any) -> str:
    """str(op) plus the node's scalar attributes (the called function, the binary operator,
    a literal's value, a hyper-parameter's default) but not the model width: sigmoid vs silu,
    + vs *, a conv width of 3 vs 4 and two head counts all count as differences;
    hidden_size = 512 vs 1024 does not."""
    parts = [str(getattr(node, "op", node))]
    op = getattr(node, "op", None)
    width = getattr(op, "value", op) == "hparam" and getattr(node, "name", None) in WIDTH_HPARAMS
    for key, value in sorted(getattr(node, "attrs", ()) or (), key=lambda kv: str(kv[0])):
        if key == "default" and width:
            continue
        if isinstance(value, (str, int, float, bool)):
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


def wl_features(graph: Any, iterations: int = 1) -> Counter[str]:
    """The multiset of WL subtree hashes over all nodes, each tagged "depth:hash"."""
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


def wl_graph_hash(graph: Any, iterations: int = 1) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return nx.weisfeiler_lehman_graph_hash(
            labelled(graph), node_attr="label", edge_attr="label", iterations=iterations
        )


def _jaccard(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    keys = set(a) | set(b)
    if not keys:
        return 1.0
    low = sum(min(a.get(k, 0), b.get(k, 0)) for k in keys)
    high = sum(max(a.get(k, 0), b.get(k, 0)) for k in keys)
    return low / high


def similarity(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Weighted Jaccard per WL depth (minimum counts over maximum counts), averaged over the
    depths (1.0 = same). Averaging keeps a deep iteration, where one changed node touches
    every hash around it, from drowning the shallow ones."""
    depths = sorted({k.split(":", 1)[0] for k in (*a, *b)})
    if not depths:
        return 1.0
    parts = []
    for d in depths:
        prefix = f"{d}:"
        parts.append(_jaccard({k: v for k, v in a.items() if k.startswith(prefix)},
                              {k: v for k, v in b.items() if k.startswith(prefix)}))
    return sum(parts) / len(parts)


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


def behaviour_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Relative distance of two fingerprints: |a - b| / max(|a|, |b|) (0 = the same outputs;
    1 when lengths differ or one is empty)."""
    if len(a) != len(b) or not a:
        return 1.0
    diff = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    scale = max(math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b)))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else 1.0
    return min(1.0, diff / scale)


class BehaviourIndex:
    """The fingerprints seen so far; 'which program computes (nearly) the same function?'"""

    def __init__(self, tolerance: float = 1e-6) -> None:
        self.tolerance = tolerance
        self._prints: dict[str, tuple[float, ...]] = {}

    def __len__(self) -> int:
        return len(self._prints)

    def add(self, key: str, fingerprint: Sequence[float]) -> None:
        self._prints[key] = tuple(fingerprint)

    def nearest(self, fingerprint: Sequence[float]) -> tuple[str | None, float]:
        best_key, best = None, math.inf
        for key, other in self._prints.items():
            d = behaviour_distance(fingerprint, other)
            if d < best:
                best_key, best = key, d
        return best_key, (best if best_key is not None else 1.0)
