"""One triggered graph kept in a run's record (``attack_info["example_graph"]``), so that a
report can draw it with its trigger nodes marked without re-running anything.

Only the structure is kept (no features): nodes ``0..num_nodes-1``, each undirected edge once,
the trigger's node indices, the graph's true label, the target class and what the clean and
the backdoored models predict for the triggered graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch_geometric.data import Data

#: The example is the first triggered graph with at most this many nodes (else the smallest).
MAX_NODES = 40


def choose_example(graphs: Sequence[Data], positions: Sequence[Sequence[int]] | None) -> int | None:
    """Index of the graph to keep: the first with trigger positions and at most
    :data:`MAX_NODES` nodes, else the smallest; ``None`` without graphs or positions."""
    if not graphs or positions is None or len(positions) != len(graphs):
        return None
    candidates = [i for i, p in enumerate(positions) if len(p)]
    if not candidates:
        return None
    for i in candidates:
        if int(graphs[i].num_nodes) <= MAX_NODES:
            return i
    return min(candidates, key=lambda i: int(graphs[i].num_nodes))


def example_graph(
    graph: Data,
    trigger_nodes: Sequence[int],
    target_class: int,
    clean_prediction: int | None = None,
    backdoored_prediction: int | None = None,
) -> dict[str, Any]:
    """The JSON-ready description of one triggered graph (see the module docstring).

    Returns:
        ``{"num_nodes", "edges": [[u, v], ...] (u < v), "trigger_nodes", "label",
        "target_class", "clean_prediction", "backdoored_prediction"}``.
    """
    edge_index = graph.edge_index.tolist() if graph.edge_index is not None else [[], []]
    edges = sorted({(min(u, v), max(u, v)) for u, v in zip(*edge_index, strict=True) if u != v})
    return {
        "num_nodes": int(graph.num_nodes),
        "edges": [list(e) for e in edges],
        "trigger_nodes": sorted(int(v) for v in trigger_nodes),
        "label": int(graph.y.view(-1)[0]) if getattr(graph, "y", None) is not None else None,
        "target_class": int(target_class),
        "clean_prediction": clean_prediction,
        "backdoored_prediction": backdoored_prediction,
    }
