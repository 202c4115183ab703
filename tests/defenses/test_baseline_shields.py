"""The baseline input shields (randomized smoothing, Prune, GNNSecurer) on hand-made graphs:
their own rules, and what every shield owes (registered, inputs untouched, deterministic for a
seed, one answer per graph -- empty graphs included --, one-line errors for bad settings)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.stats import beta
from tests.conftest import undirected
from torch_geometric.data import Data

from gnnbackdoor.defenses import DEFENSES, InputShield, ShieldResult
from gnnbackdoor.defenses.gnnsecurer import METRICS, GNNSecurer, _child, curve_elbow_curvature
from gnnbackdoor.defenses.prune import Prune, node_similarity
from gnnbackdoor.defenses.shielding import REJECTED, ModelPredictFn
from gnnbackdoor.defenses.smoothing import (
    RandomizedSmoothing,
    certificate_summary,
    certified_radius,
    clopper_pearson_lower,
)
from gnnbackdoor.errors import ConfigError, UserError
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig, train_graph_model

BASELINES = ["randomized-smoothing", "prune", "gnnsecurer"]


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


def empty_graph(features: int = 3) -> Data:
    return Data(x=torch.zeros(0, features), edge_index=torch.empty(2, 0, dtype=torch.long))


@pytest.fixture(scope="module")
def trained(request) -> tuple[torch.nn.Module, list[Data]]:
    """A small GIN trained a few epochs on cycles (class 0) and stars (class 1)."""
    graphs = []
    for i in range(40):
        n = 6 + i % 4
        pairs = [(k, (k + 1) % n) for k in range(n)] if i % 2 == 0 else [(0, k) for k in range(n)]
        pairs = [(a, b) for a, b in pairs if a != b]
        x = torch.zeros(n, 3)
        x[:, i % 3] = 1
        graphs.append(Data(x=x, edge_index=undirected(pairs), y=torch.tensor([i % 2])))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MODELS.get("gin")(hidden_channels=16, num_layers=2).build(3, 2)
        train_graph_model(
            model,
            graphs[:30],
            graphs[30:],
            GraphTrainConfig(max_epochs=5, batch_size=8),
            torch.Generator().manual_seed(0),
        )
    return model, graphs


def model_fn(trained) -> ModelPredictFn:
    model, graphs = trained
    return ModelPredictFn(model, clean_graphs=graphs[:12])


def shield(name: str) -> InputShield:
    if name == "gnnsecurer":
        return GNNSecurer(explainer_epochs=10)
    return DEFENSES.get(name)()


# --------------------------------------------------------------------------- shared contract


@pytest.mark.parametrize("name", BASELINES)
def test_registered_as_input_shields_with_a_source(name):
    cls = DEFENSES.get(name)
    assert issubclass(cls, InputShield) and cls.task == "graph"
    assert cls.reference and cls.__doc__ and DEFENSES.canonical(name) == name


@pytest.mark.parametrize("name", BASELINES)
def test_one_answer_per_graph_inputs_untouched_and_deterministic(name, trained):
    _, graphs = trained
    batch = [*graphs[20:26], empty_graph()]
    before = copy.deepcopy(batch)
    first = shield(name).predict(model_fn(trained), batch, seed=3)
    again = shield(name).predict(model_fn(trained), batch, seed=3)
    assert isinstance(first, ShieldResult)
    assert first.labels.shape == (len(batch),) and first.labels.dtype == torch.long
    assert len(first.details) == len(batch) and first.queries == 1
    assert torch.equal(first.labels, again.labels) and first.details == again.details
    assert int(first.labels[-1]) == REJECTED  # the graph without nodes
    assert set(first.labels.tolist()) <= {REJECTED, 0, 1}
    for graph, kept in zip(batch, before, strict=True):
        assert torch.equal(graph.x, kept.x) and torch.equal(graph.edge_index, kept.edge_index)


@pytest.mark.parametrize("name", BASELINES)
def test_global_torch_and_numpy_generators_are_left_alone(name, trained):
    _, graphs = trained
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    shield(name).predict(model_fn(trained), graphs[20:24], seed=np.random.default_rng(1))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)


@pytest.mark.parametrize("name", BASELINES)
def test_no_graphs_no_query(name, trained):
    fn = model_fn(trained)
    result = shield(name).predict(fn, [])
    assert result.labels.shape == (0,) and result.queries == 0 and fn.graphs == 0


@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("randomized-smoothing", {"num_samples": 0}),
        ("randomized-smoothing", {"keep_rate": 0.0}),
        ("randomized-smoothing", {"keep_rate": 1.5}),
        ("randomized-smoothing", {"unit": "pair"}),
        ("randomized-smoothing", {"alpha": 0.5}),
        ("randomized-smoothing", {"random_state": -1}),
        ("prune", {"threshold": 1.5}),
        ("prune", {"unit": "graph"}),
        ("gnnsecurer", {"explainer_epochs": 2}),
        ("gnnsecurer", {"explanation_fraction": 0.0}),
        ("gnnsecurer", {"quantile": 0.5}),
        ("gnnsecurer", {"min_flags": 8}),
        ("gnnsecurer", {"explain_batch": 0}),
    ],
)
def test_bad_settings_fail_in_one_line(name, setting):
    with pytest.raises(ConfigError) as error:
        DEFENSES.get(name)(**setting)
    message = str(error.value)
    assert "\n" not in message and next(iter(setting)) in message


# --------------------------------------------------------------------------- smoothing


def test_clopper_pearson_lower_is_the_beta_quantile():
    for k, n, alpha in [(100, 100, 0.001), (70, 100, 0.01), (3, 10, 0.05)]:
        assert clopper_pearson_lower(k, n, alpha) == pytest.approx(beta.ppf(alpha, k, n - k + 1))
    assert clopper_pearson_lower(0, 10, 0.01) == 0.0


def test_certified_radius_solves_the_coupling_bound():
    # (1 - beta)^e > 3/2 - p_A
    assert certified_radius(0.5, 0.3) == -1
    assert certified_radius(0.9, 0.5) == 0  # 0.5^1 = 0.5 < 0.6
    assert certified_radius(0.933, 0.1) == 5  # 0.9^5 = 0.59 > 0.567 > 0.9^6 = 0.53
    assert certified_radius(0.99, 1.0) == 0
    for p in np.linspace(0.51, 0.999, 25):
        for keep in (0.05, 0.2, 0.5):
            e = certified_radius(float(p), keep)
            assert (1 - keep) ** e > 1.5 - p >= (1 - keep) ** (e + 1)


def test_node_subsampling_keeps_each_node_with_the_keep_rate_and_induces_edges():
    n = 20
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n) if (a + b) % 3 == 0]
    graph = Data(x=torch.eye(n), edge_index=undirected(pairs))
    model = CountingModel()
    result = RandomizedSmoothing(num_samples=400, keep_rate=0.3).predict(model, [graph])
    assert model.calls == [len(model.seen)] and result.graphs_queried == len(model.seen)
    kept = sum(len(nodes) for nodes in result.details[0]["subgraph_nodes"])
    assert kept / (400 * n) == pytest.approx(0.3, abs=0.02)
    edges = set(pairs) | {(b, a) for a, b in pairs}
    for sub in model.seen:
        ids = sub.x.argmax(dim=1).tolist()
        expected = {(a, b) for a in range(len(ids)) for b in range(len(ids))
                    if (ids[a], ids[b]) in edges}  # fmt: skip
        assert set(map(tuple, sub.edge_index.t().tolist())) == expected


def test_edge_subsampling_keeps_every_node_and_both_directions_of_an_edge():
    graph = Data(x=torch.ones(6, 2), edge_index=undirected([(i, i + 1) for i in range(5)]))
    model = CountingModel()
    RandomizedSmoothing(num_samples=50, keep_rate=0.5, unit="edge").predict(model, [graph])
    sizes = set()
    for sub in model.seen:
        assert sub.num_nodes == 6
        edges = set(map(tuple, sub.edge_index.t().tolist()))
        assert edges == {(b, a) for a, b in edges}
        sizes.add(len(edges))
    assert len(sizes) > 1  # the draws differ


def test_the_vote_and_its_certificate():
    # 60 nodes: an empty draw (an abstention, which counts against p_A) is rare at 0.9^60
    graph = Data(x=torch.ones(60, 2), edge_index=undirected([(i, i + 1) for i in range(59)]))
    always_one = lambda graphs: torch.ones(len(graphs), dtype=torch.long)  # noqa: E731
    shield = RandomizedSmoothing(num_samples=100, keep_rate=0.1, alpha=0.001)
    result = shield.predict(always_one, [graph])
    detail = result.details[0]
    drawn = 100 - detail["abstained"]
    assert int(result.labels[0]) == 1 and detail["votes"] == {"1": drawn}
    p_lower = clopper_pearson_lower(drawn, 100, 0.001)
    assert detail["p_a_lower"] == pytest.approx(p_lower)
    assert detail["certified_radius"] == certified_radius(p_lower, 0.1) >= 1
    summary = certificate_summary(result)
    assert summary["certified_fraction"] == 1.0
    assert summary["mean_certified_radius"] == detail["certified_radius"]
    assert shield.describe()["rs_certified_fraction"] == 1.0


def test_keep_rate_one_is_the_model_itself():
    graphs = [Data(x=torch.ones(n, 2), edge_index=torch.empty(2, 0, dtype=torch.long))
              for n in (3, 4, 5)]  # fmt: skip
    result = RandomizedSmoothing(num_samples=5, keep_rate=1.0).predict(CountingModel(), graphs)
    assert result.labels.tolist() == [1, 0, 1]


def test_a_graph_answer_does_not_depend_on_its_batch():
    graphs = [Data(x=torch.eye(6), edge_index=undirected([(0, 1), (2, 3), (4, 5), (1, 2)]))]
    other = Data(x=torch.ones(4, 6), edge_index=undirected([(0, 1)]))
    alone = RandomizedSmoothing().predict(CountingModel(3), graphs, seed=5)
    mixed = RandomizedSmoothing().predict(CountingModel(3), [other, *graphs], seed=5)
    assert alone.details[0] == mixed.details[1]
    different = RandomizedSmoothing().predict(CountingModel(3), graphs, seed=6)
    assert different.details[0]["subgraph_nodes"] != alone.details[0]["subgraph_nodes"]


class SizingModel(CountingModel):
    """A :class:`CountingModel` that also notes the bytes of each query's subgraphs."""

    def __init__(self) -> None:
        super().__init__(3)
        self.bytes: list[int] = []

    def __call__(self, graphs):
        self.bytes.append(
            sum(v.numel() * v.element_size() for g in graphs for _, v in g if torch.is_tensor(v))
        )
        return super().__call__(graphs)


def test_a_large_call_is_asked_in_queries_of_whole_graphs_with_the_same_answers(monkeypatch):
    graphs = [
        Data(x=torch.eye(n), edge_index=undirected([(k, k + 1) for k in range(n - 1)]))
        for n in (3, 4, 5, 6, 7)
    ]

    def smoothed(budget: int) -> tuple[ShieldResult, SizingModel]:
        monkeypatch.setattr(RandomizedSmoothing, "query_bytes", budget)
        model = SizingModel()
        return RandomizedSmoothing(num_samples=10).predict(model, graphs, seed=2), model

    one, whole = smoothed(1 << 30)
    apart, single = smoothed(1)  # a graph's draws always go together: one query per graph
    assert one.queries == len(whole.calls) == 1 and apart.queries == len(single.calls) == 5
    budget = max(single.bytes) + min(single.bytes)
    runs, model = smoothed(budget)
    assert 1 < runs.queries == len(model.calls) < 5 and max(model.bytes) <= budget
    for result in (apart, runs):
        assert result.labels.tolist() == one.labels.tolist() and result.details == one.details
        assert result.graphs_queried == one.graphs_queried == whole.calls[0]


def test_a_wrong_number_of_answers_is_an_error():
    graph = Data(x=torch.ones(4, 2), edge_index=undirected([(0, 1)]))
    with pytest.raises(ValueError, match="labels for"):
        RandomizedSmoothing(keep_rate=1.0).predict(lambda g: torch.zeros(1), [graph])


# --------------------------------------------------------------------------- prune


def odd_one_out() -> Data:
    """A 5-ring of feature-0 nodes, node 5 (feature 1) hanging from node 0, node 6
    isolated with feature 1."""
    x = torch.zeros(7, 2)
    x[:5, 0] = 1
    x[5:, 1] = 1
    return Data(x=x, edge_index=undirected([(i, (i + 1) % 5) for i in range(5)] + [(0, 5)]))


def test_node_similarity_is_the_mean_cosine_to_the_neighbours():
    score = node_similarity(odd_one_out().x, odd_one_out().edge_index)
    assert score[:5].tolist() == pytest.approx([2 / 3, 1, 1, 1, 1])
    assert score[5] == 0 and math.isnan(score[6])


def test_prune_drops_the_dissimilar_node_keeps_isolated_ones_and_relabels():
    model = CountingModel()
    result = Prune().predict(model, [odd_one_out()])
    assert result.details[0]["removed_nodes"] == [5]
    assert result.details[0]["kept_nodes"] == 6 and result.details[0]["removed_edges"] == 1
    (sub,) = model.seen
    assert sub.num_nodes == 6 and sub.edge_index.max() < 6 and sub.edge_index.size(1) == 10
    assert int(result.labels[0]) == 0  # 6 nodes


def test_prune_edges_keeps_every_node():
    model = CountingModel()
    result = Prune(unit="edge").predict(model, [odd_one_out()])
    (sub,) = model.seen
    assert sub.num_nodes == 7 and sub.edge_index.size(1) == 10
    assert result.details[0]["removed_edges"] == 1 and result.details[0]["removed_nodes"] == []


def test_prune_with_the_lowest_threshold_changes_nothing():
    graph = odd_one_out()
    model = CountingModel()
    Prune(threshold=-1.0).predict(model, [graph])
    assert torch.equal(model.seen[0].x, graph.x)
    assert torch.equal(model.seen[0].edge_index, graph.edge_index)


def test_prune_rejects_a_graph_left_without_nodes_without_asking():
    x = torch.eye(3)  # every neighbour orthogonal
    graph = Data(x=x, edge_index=undirected([(0, 1), (1, 2)]))
    model = CountingModel()
    result = Prune().predict(model, [graph, empty_graph()])
    assert result.labels.tolist() == [REJECTED, REJECTED] and model.calls == []
    assert result.queries == 0 and all(d["rejected"] for d in result.details)


# --------------------------------------------------------------------------- GNNSecurer


def test_gnnsecurer_refuses_a_bare_black_box(trained):
    model, graphs = trained
    with pytest.raises(UserError, match="white-box") as error:
        GNNSecurer().predict(lambda g: torch.zeros(len(g), dtype=torch.long), graphs[:2])
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="reference graphs"):
        GNNSecurer().predict(ModelPredictFn(model, clean_graphs=graphs[:1]), graphs[:2])


def test_gnnsecurer_reports_seven_metrics_and_rejects_on_enough_flags(trained):
    _, graphs = trained
    fn = model_fn(trained)
    result = GNNSecurer(explainer_epochs=10, min_flags=1).predict(fn, graphs[12:30])
    for label, detail in zip(result.labels.tolist(), result.details, strict=True):
        assert set(detail["metrics"]) == set(METRICS)
        assert detail["rejected"] == bool(detail["flags"])
        assert label == (REJECTED if detail["rejected"] else detail["model_label"])
    unflagged = GNNSecurer(explainer_epochs=10, min_flags=7).predict(fn, graphs[12:30])
    assert REJECTED not in unflagged.labels.tolist() or all(
        len(d["flags"]) == 7 for d in unflagged.details if d["rejected"]
    )


def test_gnnsecurer_thresholds_flag_about_one_minus_quantile_of_the_reference(trained):
    fn = model_fn(trained)
    shield = GNNSecurer(explainer_epochs=10, quantile=0.8, min_flags=1)
    root = np.random.SeedSequence(4)
    thresholds = shield._thresholds(fn, root)
    rows = shield.metrics(fn.model, list(fn.clean_graphs), _child(root, 0))  # the same draws
    for name in METRICS:
        share = sum(name in shield.flags(row, thresholds) for row in rows) / len(rows)
        assert share <= 0.2 + 1e-9, name  # outside the central 80 %
    rate = sum(bool(shield.flags(row, thresholds)) for row in rows) / len(rows)
    assert shield._calibration[-1] == pytest.approx(rate)


def test_gnnsecurer_calibrates_once_per_model_reference_and_seed(trained, monkeypatch):
    fn = model_fn(trained)
    shield = GNNSecurer(explainer_epochs=5)
    sizes: list[int] = []
    original = GNNSecurer.metrics

    def counting(self, model, graphs, seeds):
        sizes.append(len(graphs))
        return original(self, model, graphs, seeds)

    monkeypatch.setattr(GNNSecurer, "metrics", counting)
    _, graphs = trained
    shield.predict(fn, graphs[20:23])
    shield.predict(fn, graphs[23:25])
    assert sizes == [12, 3, 2]
    shield.predict(fn, graphs[23:25], seed=9)
    assert sizes == [12, 3, 2, 12, 2]
    assert shield.describe()["gnnsecurer_reference_graphs"] == 12


def test_gnnsecurer_flags_follow_each_metric_side(monkeypatch):
    shield = GNNSecurer()
    thresholds = {name: (0.0, 1.0) for name in METRICS}
    row = dict.fromkeys(METRICS, 0.5)
    assert shield.flags(row, thresholds) == []
    row.update(prediction_confidence=2.0, elbow=-1.0, degree_variance=-1.0, curvature=-1.0)
    both = ["prediction_confidence", "degree_variance", "elbow", "curvature"]
    assert shield.flags(row, thresholds) == both  # every side is "both" by default
    sides = dict.fromkeys(METRICS, "both") | {"prediction_confidence": "low", "elbow": "high"}
    monkeypatch.setattr("gnnbackdoor.defenses.gnnsecurer.METRICS", sides)
    assert shield.flags(row, thresholds) == ["degree_variance", "curvature"]


def test_elbow_and_curvature_of_a_loss_curve():
    curve = np.concatenate([np.linspace(1.0, 0.1, 11), np.full(40, 0.1)])
    elbow, curvature = curve_elbow_curvature(curve)
    assert elbow == pytest.approx(10 / 50)
    assert curvature > 0
    late = np.concatenate([np.full(40, 1.0), np.linspace(1.0, 0.1, 11)])
    assert curve_elbow_curvature(late)[0] > elbow
    assert curve_elbow_curvature(np.full(20, 0.3)) == (0.0, 0.0)
