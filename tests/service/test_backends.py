"""The in-process model backend: chunking by size keeps the answers of one batch."""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from gnnbackdoor.models import MODELS
from gnnbackdoor.service.backends import ModelBackend, chunks


def path(n: int) -> Data:
    edges = torch.tensor([list(range(n - 1)), list(range(1, n))])
    return Data(x=torch.eye(n, 4) + 0.1 * n, edge_index=torch.cat([edges, edges.flip(0)], 1))


def test_chunks_respect_the_budget_keep_order_and_isolate_big_graphs():
    graphs = [path(n) for n in (2, 3, 10, 2, 2)]  # costs (nodes + edges): 4, 7, 28, 4, 4
    runs = chunks(graphs, 12)
    assert [[g.num_nodes for g in run] for run in runs] == [[2, 3], [10], [2, 2]]
    assert chunks([], 12) == []


def test_chunked_answers_equal_one_batch():
    torch.manual_seed(0)
    model = MODELS.get("gcn")().build(4, 3)
    graphs = [path(n) for n in range(2, 30)]
    whole = ModelBackend(model, 4, chunk_size=10**9)(graphs)
    small = ModelBackend(model, 4, chunk_size=20)(graphs)
    assert torch.equal(whole, small) and whole.shape == (len(graphs),)
