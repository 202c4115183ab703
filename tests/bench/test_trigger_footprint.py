"""bench/trigger_footprint.py measures what the SBA trigger changes, on tiny graphs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "trigger_footprint.py"


def _script():
    spec = importlib.util.spec_from_file_location("trigger_footprint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _complete(n: int) -> Data:
    pairs = [(u, v) for u in range(n) for v in range(u + 1, n)]
    edge_index = to_undirected(torch.tensor(pairs).t())
    return Data(x=torch.ones(n, 1), edge_index=edge_index, num_nodes=n)


def _empty(n: int) -> Data:
    return Data(x=torch.ones(n, 1), edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=n)


def test_on_a_complete_graph_the_trigger_only_removes_its_missing_edges():
    script = _script()
    row = script.footprint([_complete(5)], size=5, seed=0)
    assert row["changed_edges"] == 10 - row["trigger_edges"]  # K5 holds every trigger edge
    assert row["mean_edges"] == 10 and row["mean_density"] == 1.0
    assert row["bound_pct_median"] == 100.0


def test_on_an_edgeless_graph_the_trigger_adds_all_its_edges_and_skips_small_graphs():
    script = _script()
    row = script.footprint([_empty(8), _empty(3)], size=5, seed=0)
    assert row["graphs"] == 1  # the 3-node graph cannot carry a 5-node trigger
    assert row["changed_edges"] == row["trigger_edges"]
    assert row["unchanged_pct"] == 0.0
