"""GraphProt on hand-made graphs: filtering, each sampler, the vote, determinism and the
one-query-per-batch contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.conftest import undirected
from torch_geometric.data import Data

from gnnbackdoor.defenses import DEFENSES, InputShield
from gnnbackdoor.defenses.graphprot import (
    Clustering,
    GraphProt,
    GraphProtR,
    GraphProtT,
    GraphProtTF,
    dense_adjacency,
    majority_vote,
)
from gnnbackdoor.errors import ConfigError


def clique_pairs(nodes: list[int]) -> list[tuple[int, int]]:
    return [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :]]


def host_with_trigger(host: int = 10, trigger: int = 4) -> Data:
    """A ring of ``host`` nodes with chords (feature 0) and a ``trigger``-clique (feature 1)
    hanging from node 0 by one edge: the trigger is the minority in topology and features."""
    pairs = [(i, (i + 1) % host) for i in range(host)] + [(i, (i + 2) % host) for i in range(host)]
    trig = list(range(host, host + trigger))
    pairs += [*clique_pairs(trig), (0, host)]
    x = torch.zeros(host + trigger, 3)
    x[:host, 0] = 1
    x[host:, 1] = 1
    return Data(x=x, edge_index=undirected(pairs), y=torch.tensor([0]))


def two_cliques(size: int = 5, features: int = 6) -> Data:
    """Two ``size``-cliques joined by one edge, all-ones features."""
    pairs = clique_pairs(list(range(size))) + clique_pairs(list(range(size, 2 * size)))
    pairs.append((0, size))
    return Data(x=torch.ones(2 * size, features), edge_index=undirected(pairs))


class CountingModel:
    """A black box: label = number of nodes of the (sub)graph modulo ``classes``."""

    def __init__(self, classes: int = 2):
        self.classes = classes
        self.calls: list[int] = []
        self.seen: list[Data] = []

    def __call__(self, graphs):
        self.calls.append(len(graphs))
        self.seen.extend(graphs)
        return torch.tensor([g.num_nodes % self.classes for g in graphs])


def test_filter_removes_the_trigger_that_is_minority_in_topology_and_features():
    graph = host_with_trigger()
    shield = GraphProtT()
    plan = shield.plan(graph)
    assert plan.removed == [10, 11, 12, 13]
    assert plan.kept == 10


def test_filter_keeps_a_topological_minority_with_ordinary_features():
    graph = host_with_trigger()
    graph.x = torch.zeros(14, 3)
    graph.x[:, 0] = 1  # every node alike in features: no feature minority
    assert GraphProtT().plan(graph).removed == []


def test_small_graphs_pass_the_filter_unchanged():
    graph = Data(x=torch.eye(4), edge_index=undirected([(0, 1), (1, 2), (2, 3)]))
    shield = GraphProtR(filter_min_nodes=5)
    assert shield.plan(graph).removed == []
    assert shield.plan(graph).kept == 4


@pytest.mark.parametrize("cls", [GraphProtR, GraphProtT, GraphProtTF])
def test_disconnected_graphs_isolated_nodes_and_no_edges_do_not_crash(cls):
    pieces = clique_pairs([0, 1, 2]) + clique_pairs([3, 4, 5]) + [(6, 7)]  # 8, 9 isolated
    graphs = [
        Data(
            x=torch.rand(10, 4, generator=torch.Generator().manual_seed(0)),
            edge_index=undirected(pieces),
        ),
        Data(x=torch.rand(7, 4), edge_index=torch.empty(2, 0, dtype=torch.long)),
        Data(x=torch.ones(1, 4), edge_index=torch.empty(2, 0, dtype=torch.long)),
    ]
    result = cls().predict(CountingModel(), graphs)
    assert result.labels.shape == (3,)


def test_random_sampler_keeps_floor_p_of_the_filtered_nodes_and_induced_edges():
    graph = two_cliques(size=10)
    graph.x = torch.eye(20)  # features name the nodes
    model = CountingModel()
    GraphProtR(sample_rate=0.2, num_subgraphs=7, filter=False).predict(model, [graph])
    assert model.calls == [7]
    adjacency = dense_adjacency(graph.edge_index.numpy(), 20)
    for sub in model.seen:
        assert sub.num_nodes == math.floor(0.2 * 20)
        ids = sub.x.argmax(dim=1).numpy()
        expected = {(a, b) for a in range(4) for b in range(4) if adjacency[ids[a], ids[b]]}
        assert set(map(tuple, sub.edge_index.t().tolist())) == expected


def test_random_sampler_takes_at_least_one_node():
    graph = Data(x=torch.ones(3, 2), edge_index=undirected([(0, 1), (1, 2)]))
    model = CountingModel()
    GraphProtR(sample_rate=0.2).predict(model, [graph])
    assert [s.num_nodes for s in model.seen] == [1] * 5


def test_topology_sampler_takes_one_node_from_each_spectral_cluster():
    graph = two_cliques(size=5)  # |V'| = 10, N = 5 -> floor(10/5) = 2 clusters: the cliques
    model = CountingModel()
    shield = GraphProtT(num_subgraphs=5)
    shield.predict(model, [graph])
    assert model.calls == [5]
    for sub in model.seen:
        assert sub.num_nodes == 2
    # The two nodes come from different cliques: mark clique membership in the features.
    marked = two_cliques(size=5)
    marked.x[5:, 0] = 2.0
    model = CountingModel()
    GraphProtT(num_subgraphs=5, filter=False).predict(model, [marked])
    for sub in model.seen:
        assert sorted(sub.x[:, 0].tolist()) == [1.0, 2.0]


def test_topology_feature_sampler_zeroes_all_but_ceil_r_d_dimensions():
    graph = two_cliques(size=5, features=10)
    model = CountingModel()
    GraphProtTF(feature_fraction=0.75).predict(model, [graph])
    masks = []
    for sub in model.seen:
        kept = (sub.x != 0).any(dim=0)
        assert int(kept.sum()) == math.ceil(0.75 * 10)
        assert bool(((sub.x == 0) | (sub.x == 1)).all())
        masks.append(tuple(kept.tolist()))
    assert len(set(masks)) > 1  # a fresh draw per subgraph
    # Without feature sampling every dimension stays.
    model = CountingModel()
    GraphProtT().predict(model, [graph])
    assert all(bool((s.x == 1).all()) for s in model.seen)


def test_majority_vote_ties_go_to_the_smaller_class():
    assert majority_vote([1, 1, 0]) == (1, {1: 2, 0: 1})
    assert majority_vote([2, 1, 2, 1])[0] == 1
    assert majority_vote([3, 0, 2])[0] == 0
    with pytest.raises(ValueError):
        majority_vote([])


def test_vote_and_details_in_the_shield_result():
    graph = two_cliques(size=5)
    votes = iter([1, 0, 1, 0, 2])

    def model(graphs):
        return torch.tensor([next(votes) for _ in graphs])

    result = GraphProtT().predict(model, [graph])
    assert result.labels.tolist() == [0]  # 2 votes for 0 and for 1: the smaller wins
    assert result.details[0]["votes"] == {"0": 2, "1": 2, "2": 1}
    assert result.details[0]["removed_nodes"] == []
    assert (result.queries, result.graphs_queried) == (1, 5)


@pytest.mark.parametrize("cls", [GraphProtR, GraphProtT, GraphProtTF])
def test_one_query_per_batch_and_inputs_untouched(cls):
    graphs = [host_with_trigger(8 + i, 3 + i % 2) for i in range(6)] + [two_cliques(6)]
    before = [(g.x.clone(), g.edge_index.clone()) for g in graphs]
    model = CountingModel()
    result = cls(num_subgraphs=4).predict(model, graphs)
    assert model.calls == [4 * len(graphs)]
    assert (result.queries, result.graphs_queried) == (1, 4 * len(graphs))
    assert len(result.details) == len(graphs)
    for graph, (x, edge_index) in zip(graphs, before, strict=True):
        assert torch.equal(graph.x, x) and torch.equal(graph.edge_index, edge_index)


@pytest.mark.parametrize("cls", [GraphProtR, GraphProtT, GraphProtTF])
def test_deterministic_and_independent_of_the_rest_of_the_batch(cls):
    graphs = [host_with_trigger(8 + i, 3 + i % 3) for i in range(8)]
    first = cls(random_state=3).predict(CountingModel(3), graphs)
    second = cls(random_state=3).predict(CountingModel(3), graphs)
    assert first.details == second.details
    assert torch.equal(first.labels, second.labels)
    alone = cls(random_state=3).predict(CountingModel(3), graphs[5:6])
    assert alone.details[0] == first.details[5]


def _draws(shield: GraphProt, graph: Data, **kwargs) -> tuple:
    model = CountingModel()
    shield.predict(model, [graph], **kwargs)
    return tuple(tuple(s.x.sum(0).tolist()) for s in model.seen)


def test_random_state_changes_the_draw():
    graph = two_cliques(size=10, features=8)
    assert len({_draws(GraphProtTF(random_state=seed), graph) for seed in range(4)}) > 1


def test_the_seed_handed_in_is_the_only_source_of_randomness():
    """``seed=`` overrides ``random_state``; an int seed or a generator gives the same draws
    every time, whatever torch's or NumPy's global state."""
    graph = two_cliques(size=10, features=8)
    shield = GraphProtTF(random_state=0)
    assert _draws(shield, graph, seed=5) == _draws(GraphProtTF(random_state=5), graph)
    assert len({_draws(shield, graph, seed=s) for s in range(4)}) > 1
    torch.manual_seed(1)
    np.random.seed(1)
    first = _draws(shield, graph, seed=np.random.default_rng(9))
    torch.manual_seed(2)
    np.random.seed(2)
    assert _draws(shield, graph, seed=np.random.default_rng(9)) == first
    with pytest.raises(ValueError, match="seed"):
        shield.predict(CountingModel(), [graph], seed=-1)


def test_clustering_separates_cliques_and_feature_blobs():
    clustering = Clustering()
    rng = np.random.default_rng(0)
    adjacency = dense_adjacency(two_cliques(size=5).edge_index.numpy(), 10)
    labels = clustering.spectral(adjacency, 2, rng)
    assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]
    assert clustering.spectral(adjacency, 1, rng).tolist() == [0] * 10
    assert sorted(clustering.spectral(adjacency[:3, :3], 3, rng).tolist()) == [0, 1, 2]
    points = np.concatenate([rng.normal(0, 0.1, (6, 2)), rng.normal(5, 0.1, (4, 2))])
    labels = clustering.mixture(points, rng)
    assert len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1 and labels[0] != labels[6]
    assert clustering.mixture(np.ones((5, 3)), rng).tolist() == [0] * 5


def test_empty_batch_makes_no_query():
    model = CountingModel()
    result = GraphProtTF().predict(model, [])
    assert model.calls == [] and result.labels.numel() == 0 and result.queries == 0


def test_bad_graphs_and_bad_models_raise():
    with pytest.raises(ValueError, match="no nodes"):
        GraphProtR().predict(
            CountingModel(), [Data(x=torch.empty(0, 3), edge_index=torch.empty(2, 0).long())]
        )
    with pytest.raises(ValueError, match="labels for"):
        GraphProtR().predict(lambda gs: torch.zeros(1, dtype=torch.long), [two_cliques()])


def test_registered_names_and_parameter_validation():
    assert DEFENSES.get("graphprot-r") is GraphProtR
    assert DEFENSES.get("graphprot-t") is GraphProtT
    assert DEFENSES.get("graphprot-tf") is GraphProtTF
    assert issubclass(DEFENSES.get("graphprot"), GraphProtTF)
    assert issubclass(GraphProt, InputShield)
    for bad in [
        {"num_subgraphs": 0},
        {"sample_rate": 0},
        {"feature_fraction": 1.5},
        {"filter_min_nodes": 2},
        {"covariance_type": "full"},
        {"kmeans_init": 0},
        {"random_state": -1},
    ]:
        with pytest.raises(ConfigError):
            GraphProtTF(**bad)
    assert set(GraphProtTF().params()) >= {"num_subgraphs", "sample_rate", "feature_fraction"}


def test_graph_pipeline_records_defended_accuracy_and_queries(tmp_path, offline_location):
    from gnnbackdoor.experiments.runner import RunSpec, run_all

    spec = RunSpec(
        "graph",
        "Motifs",
        "gcn",
        None,
        "graphprot-tf",
        0,
        {"train.max_epochs": "3", "data.train_fraction": "0.6667"},
    )
    (record,) = run_all([spec], tmp_path, offline_location)
    metrics = record["metrics"]
    assert 0 <= metrics["defended_acc"] <= 1
    assert metrics["queries"] == 1
    assert metrics["queried_graphs"] == 5 * metrics["num_eval_graphs"]
    assert record["config"]["defense"]["num_subgraphs"] == 5
    assert 0 <= metrics["subgraph_acc"] <= 1
    assert "trigger_filter_trigger_removed" not in metrics  # no attack, no trigger


def test_graph_pipeline_records_trigger_coverage_under_an_attack(tmp_path, offline_location):
    from gnnbackdoor.experiments.runner import RunSpec, run_all

    spec = RunSpec(
        "graph",
        "Motifs",
        "gcn",
        "sba",
        "graphprot-r",
        0,
        {"train.max_epochs": "2", "data.train_fraction": "0.6667", "attack.trigger_size": "3"},
    )
    (record,) = run_all([spec], tmp_path, offline_location)
    metrics = record["metrics"]
    for key in (
        "subgraph_acc",
        "subgraph_asr",
        "subgraph_target_no_trigger",
        "defended_target_no_trigger",
        "trigger_filter_trigger_removed",
        "trigger_filter_other_removed",
        "trigger_subgraph_two_trigger",
        "trigger_subgraph_full_trigger",
    ):
        assert 0 <= metrics[key] <= 1, key
    assert 0 <= metrics["trigger_subgraph_trigger_nodes"] <= 3


@pytest.mark.parametrize(
    "shield",
    [
        GraphProtR(sample_rate=1.0, filter=False, num_subgraphs=3),
        GraphProtT(num_subgraphs=1, filter=False),
        GraphProtTF(num_subgraphs=1, filter=False, feature_fraction=1.0),
    ],
)
def test_whole_graph_subgraphs_give_the_bare_model(shield):
    """With p = 1 (R) or N = 1 (T, TF with r = 1) each subgraph is the graph itself, so the
    shield answers what the model answers."""
    graphs = [host_with_trigger(8 + i, 3 + i % 3) for i in range(6)] + [two_cliques(4)]

    def model(batch):
        return torch.tensor([int(g.x.sum()) * 7 + g.edge_index.size(1) for g in batch])

    assert shield.predict(model, graphs).labels.tolist() == model(graphs).tolist()


def test_details_name_each_subgraphs_input_nodes_and_its_vote():
    """``subgraph_nodes`` are indices into the *input* graph (after the filter, so never a
    removed node), each subgraph is the graph induced on them, and ``subgraph_votes`` are the
    model's labels in the same order."""
    graph = host_with_trigger(10, 4)
    model = CountingModel(classes=3)
    result = GraphProtR(sample_rate=0.5).predict(model, [graph])
    detail = result.details[0]
    assert detail["removed_nodes"] == [10, 11, 12, 13]
    assert len(detail["subgraph_nodes"]) == 5
    assert detail["subgraph_votes"] == [g.num_nodes % 3 for g in model.seen]
    edges = set(map(tuple, graph.edge_index.t().tolist()))
    for nodes, sub in zip(detail["subgraph_nodes"], model.seen, strict=True):
        assert nodes == sorted(nodes) and not set(nodes) & {10, 11, 12, 13}
        assert len(nodes) == 5  # floor(0.5 * 10 kept nodes)
        assert torch.equal(sub.x, graph.x[nodes])
        expected = {
            (i, j) for i, a in enumerate(nodes) for j, b in enumerate(nodes) if (a, b) in edges
        }
        assert set(map(tuple, sub.edge_index.t().tolist())) == expected
