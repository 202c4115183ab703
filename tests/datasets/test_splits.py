"""Splits: sizes, disjointness, stratification and determinism, on tiny graphs."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import erdos_renyi_graph

from gnnbackdoor.datasets import split_graphs, split_links
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.utils.seeding import RunStreams, Stage


def _pairs(index: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(sorted(p)) for p in index.t().tolist()}


def seeded_split_links(graph: Data, seed: int):
    """``split_links`` run as the pipeline runs it: in the seeded data-split stage."""
    with RunStreams(seed).running(Stage.DATA_SPLIT):
        return split_links(graph)


@pytest.fixture
def random_graph() -> Data:
    torch.manual_seed(0)
    edge_index = erdos_renyi_graph(60, 0.2)
    return Data(x=torch.rand(60, 5), edge_index=edge_index, num_nodes=60)


def test_link_split_is_85_5_10_disjoint_and_covers_all_edges(random_graph):
    split = seeded_split_links(random_graph, 0)
    train = _pairs(split.train.pos_edge_label_index)
    val = _pairs(split.val.pos_edge_label_index)
    test = _pairs(split.test.pos_edge_label_index)
    total = len(_pairs(random_graph.edge_index))
    assert train | val | test == _pairs(random_graph.edge_index)
    assert not (train & val or train & test or val & test)
    assert len(val) == int(0.05 * total)
    assert len(test) == int(0.10 * total)
    # message passing uses training edges only, in both directions
    assert _pairs(split.train.edge_index) == train
    assert split.train.edge_index.size(1) == 2 * len(train)


def test_link_split_negatives_are_non_edges_in_equal_number(random_graph):
    split = seeded_split_links(random_graph, 1)
    edges = _pairs(random_graph.edge_index)
    for part in (split.val, split.test):
        negatives = _pairs(part.neg_edge_label_index)
        assert part.neg_edge_label_index.size(1) == part.pos_edge_label_index.size(1)
        assert not negatives & edges


def test_link_split_depends_only_on_the_seed(random_graph):
    a, b = seeded_split_links(random_graph, 3), seeded_split_links(random_graph, 3)
    c = seeded_split_links(random_graph, 4)
    assert torch.equal(a.test.pos_edge_label_index, b.test.pos_edge_label_index)
    assert torch.equal(a.test.neg_edge_label_index, b.test.neg_edge_label_index)
    assert not torch.equal(a.test.pos_edge_label_index, c.test.pos_edge_label_index)


def test_link_split_rejects_bad_fractions(random_graph):
    with pytest.raises(ConfigError):
        split_links(random_graph, val=0.6, test=0.5)


def test_graph_split_is_stratified_disjoint_and_seeded(tiny_graph_dataset):
    split = split_graphs(tiny_graph_dataset, seed=0, train_fraction=0.8, val_fraction=0.25)
    indices = split.train_index + split.val_index + split.test_index
    assert sorted(indices) == list(range(40))
    assert len(split.test) == 8 and len(split.val) == 8 and len(split.train) == 24
    test_labels = [int(g.y) for g in split.test]
    assert test_labels.count(0) == test_labels.count(1) == 4
    again = split_graphs(tiny_graph_dataset, seed=0, train_fraction=0.8, val_fraction=0.25)
    assert again.test_index == split.test_index
    assert split.num_classes == 2 and split.num_features == 3


def test_graph_split_train_fraction_two_thirds(tiny_graph_dataset):
    split = split_graphs(tiny_graph_dataset, seed=1, train_fraction=2 / 3, val_fraction=0.0)
    assert len(split.train) == 26 and len(split.test) == 14 and split.val == []


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_graph_split_rejects_bad_train_fraction(tiny_graph_dataset, fraction):
    with pytest.raises(ConfigError):
        split_graphs(tiny_graph_dataset, seed=0, train_fraction=fraction)
