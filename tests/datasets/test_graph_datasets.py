"""Feature preparation of TU graph datasets."""

from __future__ import annotations

import warnings

import torch
from torch_geometric.data import Data

from gnnbackdoor.datasets.graph import _strip, one_hot_degree, standardize_columns


def test_standardize_columns_scales_only_the_chosen_columns():
    first = Data(x=torch.tensor([[0.0, 1.0, 5.0], [2.0, 0.0, 5.0]]))
    second = Data(x=torch.tensor([[4.0, 1.0, 5.0]]))
    standardize_columns([first, second], range(0, 1))
    column = torch.cat([first.x[:, 0], second.x[:, 0]])
    assert torch.allclose(column, torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(first.x[:, 1:], torch.tensor([[1.0, 5.0], [0.0, 5.0]]))


def test_standardize_columns_only_shifts_constant_columns():
    graph = Data(x=torch.tensor([[3.0], [3.0]]))
    standardize_columns([graph], range(1))
    assert torch.equal(graph.x, torch.zeros(2, 1))


def test_featureless_graphs_keep_isolated_nodes_and_end_with_only_x_edges_and_label():
    # 4 nodes, node 3 isolated: the edges alone would say 3 nodes
    edges = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    raw = Data(edge_index=edges, y=torch.tensor(1), num_nodes=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [graph] = one_hot_degree([_strip(raw)])
        assert graph.num_nodes == 4
    assert sorted(graph.keys()) == ["edge_index", "x", "y"]
    assert graph.x.argmax(1).tolist() == [1, 2, 1, 0]
    assert graph.y.shape == (1,)
