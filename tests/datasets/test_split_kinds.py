"""Every split the toolkit makes, at any allowed fraction: tiny classes fall back to an
unstratified draw, a fraction that gives 0 items is refused in one line naming the count, and
link-split negatives are distinct unordered non-edges, disjoint between validation and test."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric.data import Data
from torch_geometric.utils import erdos_renyi_graph

from gnnbackdoor.cli import main
from gnnbackdoor.datasets import load_dataset, split_graphs, split_links
from gnnbackdoor.defenses.base import ModelRepairDefense
from gnnbackdoor.defenses.gcleaner import GCleaner
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.utils.seeding import RunStreams, Stage

HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _graphs(class_sizes: list[int]) -> list[Data]:
    graphs = []
    for label, size in enumerate(class_sizes):
        for _ in range(size):
            graphs.append(
                Data(
                    x=torch.ones(2, 1),
                    edge_index=torch.tensor([[0, 1], [1, 0]]),
                    y=torch.tensor([label]),
                )
            )
    return graphs


@HYPOTHESIS
@given(
    class_sizes=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    train_fraction=st.floats(0.01, 0.99),
    val_fraction=st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 0.9]),
    seed=st.integers(0, 2**31),
)
def test_graph_split_partitions_or_refuses_in_one_line(
    class_sizes, train_fraction, val_fraction, seed
):
    graphs = _graphs(class_sizes)
    try:
        split = split_graphs(graphs, seed, train_fraction, val_fraction)
    except ConfigError as error:
        assert "\n" not in str(error) and "graphs" in str(error)
        return
    parts = [split.train_index, split.val_index, split.test_index]
    assert sorted(i for part in parts for i in part) == list(range(len(graphs)))
    assert split.train and split.test and (split.val or val_fraction == 0)
    assert len(split.train) + len(split.val) == math.floor(train_fraction * len(graphs))


def test_stratification_is_unchanged_when_every_class_has_two_graphs(tiny_graph_dataset):
    from sklearn.model_selection import train_test_split

    labels = [int(g.y) for g in tiny_graph_dataset]
    split = split_graphs(tiny_graph_dataset, seed=5, train_fraction=0.7, val_fraction=0.0)
    _, test = train_test_split(range(40), train_size=0.7, random_state=5, stratify=labels)
    assert split.test_index == sorted(test)


def test_tiny_classes_are_drawn_unstratified_while_the_rest_stay_stratified():
    graphs = _graphs([20, 20, 1, 1])  # two singleton classes: pooled into one stratum
    split = split_graphs(graphs, seed=0, train_fraction=0.5, val_fraction=0.0)
    test_labels = [int(graphs[i].y) for i in split.test_index]
    assert test_labels.count(0) == test_labels.count(1) == 10
    assert len(split.test) == 21


def test_a_train_fraction_that_gives_no_graph_names_the_count():
    with pytest.raises(ConfigError, match="gives 0 training and 10 test graphs of 10"):
        split_graphs(_graphs([5, 5]), seed=0, train_fraction=0.05)


@pytest.mark.realdata
def test_fingerprint_at_two_thirds_splits(real_location):
    graphs = load_dataset("Fingerprint", real_location)
    split = split_graphs(graphs, seed=0, train_fraction=0.667, val_fraction=0.1)
    assert len(split.train) + len(split.val) + len(split.test) == len(graphs)


class _Repair(ModelRepairDefense):
    def repair(self, model, clean_graphs, ctx):
        return model


@pytest.mark.parametrize("defense_cls", [_Repair, GCleaner])
def test_defender_splits_refuse_zero_and_all_in_one_line(defense_cls, tiny_graph_dataset):
    test = tiny_graph_dataset[:8]  # a tiny test split of two classes
    generator = torch.Generator().manual_seed(0)
    kwargs = {"holding_basis": "test"} if defense_cls is GCleaner else {}
    with pytest.raises(ConfigError, match="gives 0 defender graphs of the 8 test graphs"):
        defense_cls(holding_rate=0.05, **kwargs).split_defender_data(test, generator)
    with pytest.raises(ConfigError, match="leaving none of the 8 test graphs"):
        defense_cls(holding_rate=0.99, **kwargs).split_defender_data(test, generator)
    defender, evaluation = defense_cls(holding_rate=0.25, **kwargs).split_defender_data(
        test, generator
    )
    assert len(defender) == 2 and sorted(defender + evaluation) == list(range(8))


def test_gcleaner_dataset_basis_names_the_dataset_count(tiny_graph_dataset):
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError, match="of the 40 dataset graphs"):
        GCleaner(holding_rate=0.01).split_defender_data(
            tiny_graph_dataset[:8], generator, dataset_size=40
        )


def _pairs(index: torch.Tensor) -> list[tuple[int, int]]:
    return [tuple(sorted(p)) for p in index.t().tolist()]


@HYPOTHESIS
@given(
    num_nodes=st.integers(8, 40),
    density=st.floats(0.1, 0.7),
    val=st.sampled_from([0.05, 0.1, 0.2]),
    test=st.sampled_from([0.1, 0.2, 0.3]),
    graph_seed=st.integers(0, 10_000),
    seed=st.integers(0, 2**31),
)
def test_link_split_invariants(num_nodes, density, val, test, graph_seed, seed):
    torch.manual_seed(graph_seed)
    edge_index = erdos_renyi_graph(num_nodes, density)
    graph = Data(x=torch.ones(num_nodes, 2), edge_index=edge_index, num_nodes=num_nodes)
    try:
        with RunStreams(seed).running(Stage.DATA_SPLIT):
            split = split_links(
                graph, val=val, test=test, rng=RunStreams(seed).numpy_generator(Stage.DATA_SPLIT)
            )
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    edges = set(_pairs(edge_index))
    positives = [_pairs(p.pos_edge_label_index) for p in (split.train, split.val, split.test)]
    assert set().union(*map(set, positives)) == edges
    assert sum(map(len, positives)) == len(edges)  # disjoint positive parts
    val_neg, test_neg = (
        _pairs(split.val.neg_edge_label_index),
        _pairs(split.test.neg_edge_label_index),
    )
    for negatives, part in ((val_neg, split.val), (test_neg, split.test)):
        assert len(negatives) == len(set(negatives)) == part.pos_edge_label_index.size(1)
        assert all(u != v for u, v in negatives)
        assert not set(negatives) & edges
    assert not set(val_neg) & set(test_neg)


def test_a_link_fraction_that_gives_no_edge_names_the_count(random_graph_60):
    with pytest.raises(ConfigError, match=r"data.link_val=0.0001 gives 0 of the graph's \d+"):
        split_links(random_graph_60, val=0.0001)


@pytest.fixture
def random_graph_60() -> Data:
    torch.manual_seed(0)
    return Data(x=torch.rand(60, 5), edge_index=erdos_renyi_graph(60, 0.2), num_nodes=60)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["--task", "link", "--dataset", "SBM", "--model", "gae",
             "--set", "data.link_val=0.0001"],
            "gives 0 of the graph's 961 undirected edges",
        ),
        (
            ["--task", "graph", "--dataset", "Motifs", "--model", "gcn", "--attack", "sba",
             "--set", "attack.injection_ratio=0.001"],
            "poisons 0 of the",
        ),
        (
            ["--task", "link", "--dataset", "SBM", "--model", "gae", "--attack", "link-backdoor",
             "--set", "attack.p=0.0001"],
            "gives 0 poisoning target links",
        ),
        (
            ["--task", "graph", "--dataset", "Motifs", "--model", "gcn", "--defense", "gcleaner",
             "--set", "defense.holding_rate=0.001"],
            "gives 0 defender graphs of the 300 dataset graphs",
        ),
    ],
)  # fmt: skip
def test_fractions_that_round_to_nothing_through_the_cli(tmp_path, capsys, argv, needle):
    args = ["run", *argv, "--set", "train.max_epochs=1", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
