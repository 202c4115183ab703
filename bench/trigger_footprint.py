"""How much of a graph an SBA trigger changes, per dataset: why a 5-node trigger barely
touches a dense COLLAB graph (issue 14 item 3: explain each attack shortfall by measurement).

Not a speed benchmark: a measurement of the data, kept here because, like the benchmarks, it
is a script that writes JSON + Markdown the pages may cite. For each of GraphProt's datasets
and two trigger sizes (GraphProt's 5 nodes; GCleaner's 0.3 x the average graph size,
rounded), one connected Erdős–Rényi trigger (edge probability 0.8, as the SBA attack draws
it: ``gnnbackdoor.attacks.sba.draw_connected_trigger``) is embedded at random nodes of every
graph that has enough nodes, with the attack's own ``Trigger.apply`` (edges among the chosen
nodes removed, the trigger's edges added; node features untouched). Per dataset and size:

- ``mean_edges``: undirected edges per graph; ``mean_density``: edges / (n (n - 1) / 2);
- ``changed_edges``: undirected edges added or removed by the trigger (mean per graph), and
  ``changed_pct``: the same as a percentage of the graph's edges (mean, median);
- ``bound_pct``: the most any trigger of this size could change, C(size, 2) / edges
  (median over graphs), whatever its shape or placement;
- ``trigger_degree_change_pct``: mean |degree after - degree before| / degree before of the
  trigger nodes (%), the change a degree-based node feature would see; COLLAB's node
  features are the one-hot degree computed when the data is loaded, and SBA leaves node
  features as they are, so its trigger nodes keep their former degree as their feature;
- ``unchanged_pct``: share of graphs whose edge set the trigger leaves exactly as it was.

    python bench/trigger_footprint.py [--datasets AIDS COLLAB] [--seed 0]

Data come from ``$GNNBACKDOOR_DATA_MIRROR`` (or PyG's download) as in every run. Writes
``bench/results/trigger_footprint.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data
from torch_geometric.utils import degree

from gnnbackdoor.attacks.sba import Pattern, draw_connected_trigger
from gnnbackdoor.attacks.triggers import random_positions
from gnnbackdoor.datasets import DATASETS, DataLocation
from gnnbackdoor.experiments.records import versions

OUT = Path(__file__).resolve().parent / "results"
DATASETS_DEFAULT = ["AIDS", "DHFR", "NCI1", "PROTEINS", "ENZYMES", "COLLAB"]
GRAPHPROT_TRIGGER = 5  # GraphProt Sec. 5: "SBA (Erdős–Rényi trigger with 5 nodes)"
GCLEANER_FRACTION = 0.3  # our GCleaner protocol: 0.3 x the average graph size
EDGE_PROB = 0.8  # SBA's trigger density (the attack's default)


def undirected_edges(graph: Data) -> set[tuple[int, int]]:
    """The graph's edges as ``{(u, v): u < v}`` (self-loops dropped)."""
    src, dst = graph.edge_index.tolist()
    return {(min(u, v), max(u, v)) for u, v in zip(src, dst, strict=True) if u != v}


def footprint(graphs: list[Data], size: int, seed: int) -> dict[str, Any]:
    """One dataset at one trigger size (see the module docstring for the fields)."""
    generator = torch.Generator().manual_seed(seed)
    trigger = draw_connected_trigger(Pattern.ERDOS_RENYI, size, generator, EDGE_PROB)
    changed, changed_pct, bound_pct, degree_pct, unchanged = [], [], [], [], 0
    edges_per_graph, density = [], []
    fits = [g for g in graphs if int(g.num_nodes) >= size]
    for graph in fits:
        n = int(graph.num_nodes)
        before = undirected_edges(graph)
        positions = random_positions(n, size, generator)
        triggered = trigger.apply(graph, positions)
        after = undirected_edges(triggered)
        diff = len(before ^ after)
        m = max(len(before), 1)
        edges_per_graph.append(len(before))
        density.append(len(before) / (n * (n - 1) / 2) if n > 1 else 0.0)
        changed.append(diff)
        changed_pct.append(100.0 * diff / m)
        bound_pct.append(100.0 * (size * (size - 1) / 2) / m)
        unchanged += diff == 0
        d0 = degree(graph.edge_index[0], n)[positions]
        d1 = degree(triggered.edge_index[0], n)[positions]
        has_edges = d0 > 0
        degree_pct += (100.0 * (d1 - d0).abs()[has_edges] / d0[has_edges]).tolist()
    return {
        "trigger_nodes": size,
        "trigger_edges": trigger.num_edges,
        "graphs": len(fits),
        "mean_nodes": statistics.fmean(int(g.num_nodes) for g in fits),
        "mean_edges": statistics.fmean(edges_per_graph),
        "mean_density": statistics.fmean(density),
        "changed_edges": statistics.fmean(changed),
        "changed_pct_mean": statistics.fmean(changed_pct),
        "changed_pct_median": statistics.median(changed_pct),
        "bound_pct_median": statistics.median(bound_pct),
        "trigger_degree_change_pct": statistics.fmean(degree_pct) if degree_pct else 0.0,
        "unchanged_pct": 100.0 * unchanged / len(fits),
    }


def markdown(result: dict[str, Any]) -> str:
    head = (
        "| dataset | trigger nodes | trigger edges | graphs | nodes | edges | density | "
        "changed edges | changed % (mean) | changed % (median) | bound % (median) | "
        "trigger-node degree change % | unchanged % |\n" + "|---" * 13 + "|\n"
    )
    rows = "".join(
        f"| {r['dataset']} | {r['trigger_nodes']} | {r['trigger_edges']} | {r['graphs']} | "
        f"{r['mean_nodes']:.1f} | {r['mean_edges']:.1f} | {r['mean_density']:.2f} | "
        f"{r['changed_edges']:.2f} | {r['changed_pct_mean']:.2f} | "
        f"{r['changed_pct_median']:.2f} | {r['bound_pct_median']:.2f} | "
        f"{r['trigger_degree_change_pct']:.1f} | {r['unchanged_pct']:.1f} |\n"
        for r in result["rows"]
    )
    return (
        "# SBA trigger footprint per dataset\n\n"
        "How much of each graph an Erdős–Rényi SBA trigger (edge probability 0.8) changes "
        "when embedded at random nodes, at GraphProt's 5 nodes and at 0.3 x the average "
        "graph size (GCleaner's size). Means over the graphs with at least as many nodes as "
        "the trigger; 'bound' is C(size, 2) / edges, the most any trigger of that size could "
        "change. Generated by `python bench/trigger_footprint.py` "
        f"(seed {result['seed']}).\n\n" + head + rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS_DEFAULT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        graphs = DATASETS.get(name)().load(DataLocation())
        average = statistics.fmean(int(g.num_nodes) for g in graphs)
        for size in sorted({GRAPHPROT_TRIGGER, max(2, round(GCLEANER_FRACTION * average))}):
            row = {"dataset": name, **footprint(graphs, size, args.seed)}
            rows.append(row)
            print(
                f"{name} size {size}: {row['changed_edges']:.2f} edges changed "
                f"({row['changed_pct_mean']:.2f} % of {row['mean_edges']:.0f})",
                flush=True,
            )
    result = {
        "script": "bench/trigger_footprint.py",
        "seed": args.seed,
        "rows": rows,
        "versions": versions(),
        "machine": platform.platform(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "trigger_footprint.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "trigger_footprint.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
