"""Graphs without nodes: dropped at load and counted; every predicting path answers once per
input graph. Every registered graph dataset x every graph model trains one epoch on a small
subset and predicts one label per test graph."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch_geometric.data import Data

from gnnbackdoor.datasets import DATASETS, DataLocation, GraphDataset, split_graphs
from gnnbackdoor.errors import UserError
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig, predict_graphs, train_graph_model

GRAPH_DATASETS = sorted(name for name, cls in DATASETS.items() if cls.task == "graph")
GRAPH_MODELS = sorted(name for name, cls in MODELS.items() if cls.task == "graph")
GENERATED = {"Motifs"}  # need no mirror


def _empty(width: int, label: int = 0) -> Data:
    return Data(
        x=torch.empty(0, width),
        edge_index=torch.empty(2, 0, dtype=torch.long),
        y=torch.tensor([label]),
    )


class _WithEmptyGraphs(GraphDataset):
    task: ClassVar[str] = "graph"
    registered_name = "with-empty"

    def __init__(self, graphs: list[Data]):
        self.graphs = graphs

    def load(self, location: DataLocation) -> list[Data]:
        return list(self.graphs)


def test_fetch_drops_graphs_without_nodes_and_counts_them(tiny_graph_dataset, tmp_path):
    graphs = [*tiny_graph_dataset[:5], _empty(3), *tiny_graph_dataset[5:10], _empty(3)]
    dataset = _WithEmptyGraphs(graphs)
    loaded = dataset.fetch(DataLocation(cache_dir=tmp_path, mirror_dir=None))
    assert len(loaded) == 10 and all(g.num_nodes > 0 for g in loaded)
    assert dataset.dropped_empty_graphs == 2


def test_a_dataset_of_only_empty_graphs_is_one_line(tmp_path):
    dataset = _WithEmptyGraphs([_empty(3), _empty(3)])
    with pytest.raises(UserError, match="no graph with a node"):
        dataset.fetch(DataLocation(cache_dir=tmp_path, mirror_dir=None))


@pytest.mark.parametrize("model_name", GRAPH_MODELS)
def test_predict_graphs_answers_once_per_graph_even_for_empty_ones(tiny_graph_dataset, model_name):
    torch.manual_seed(0)
    model = MODELS.get(model_name)().build(3, 2)
    graphs = [tiny_graph_dataset[0], _empty(3), tiny_graph_dataset[1], _empty(3)]
    for batch_size in (1, 2, 3, 512):
        labels, probs = predict_graphs(model, graphs, batch_size)
        assert labels.shape == (4,) and probs.shape == (4, 2)
    # the non-empty graphs get the answer they get alone
    alone = predict_graphs(model, [tiny_graph_dataset[0], tiny_graph_dataset[1]])[1]
    assert torch.allclose(probs[[0, 2]], alone, atol=1e-6)


def test_the_model_backend_answers_once_per_graph_even_for_empty_ones(tiny_graph_dataset):
    pytest.importorskip("httpx")
    from gnnbackdoor.service.backends import ModelBackend

    torch.manual_seed(0)
    backend = ModelBackend(MODELS.get("gcn")().build(3, 2), 3)
    labels = backend([tiny_graph_dataset[0], _empty(3), tiny_graph_dataset[1], _empty(3)])
    assert labels.shape == (4,)


def _subset(graphs: list[Data], per_class: int = 4) -> list[Data]:
    """A few graphs of each class (a few dozen in all), in dataset order."""
    chosen: dict[int, list[Data]] = {}
    for graph in graphs:
        bucket = chosen.setdefault(int(graph.y), [])
        if len(bucket) < per_class:
            bucket.append(graph)
    return [g for bucket in chosen.values() for g in bucket]


def _location(request, tmp_path_factory, name: str) -> DataLocation:
    if name in GENERATED:
        return DataLocation(cache_dir=tmp_path_factory.mktemp("cache"), mirror_dir=None)
    return request.getfixturevalue("real_location")


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[Data]]:
    return {}


@pytest.mark.parametrize("model_name", GRAPH_MODELS)
@pytest.mark.parametrize(
    "dataset_name",
    [n if n in GENERATED else pytest.param(n, marks=pytest.mark.realdata) for n in GRAPH_DATASETS],
)
def test_every_graph_dataset_trains_every_graph_model_and_answers_once_per_graph(
    request, tmp_path_factory, loaded, dataset_name, model_name
):
    if dataset_name not in loaded:
        dataset = DATASETS.get(dataset_name)()
        graphs = dataset.fetch(_location(request, tmp_path_factory, dataset_name))
        assert all(g.num_nodes > 0 for g in graphs)
        assert dataset.dropped_empty_graphs == dataset.empty_graphs
        loaded[dataset_name] = _subset(graphs)
    graphs = loaded[dataset_name]
    split = split_graphs(graphs, seed=0, train_fraction=0.6, val_fraction=0.2)
    torch.manual_seed(0)
    model = MODELS.get(model_name)(hidden_channels=8, num_layers=2).build(
        split.num_features, split.num_classes
    )
    config = GraphTrainConfig(max_epochs=1, batch_size=8)
    report = train_graph_model(
        model, split.train, split.val, config, torch.Generator().manual_seed(0)
    )
    assert report.epochs == 1 and not report.diverged
    labels, probs = predict_graphs(model, split.test)
    assert labels.shape == (len(split.test),)
    assert probs.shape == (len(split.test), split.num_classes)
    assert bool(torch.isfinite(probs).all())


@pytest.mark.parametrize(
    "dataset_name",
    [n if n in GENERATED else pytest.param(n, marks=pytest.mark.realdata) for n in GRAPH_DATASETS],
)
def test_every_graph_dataset_splits_at_any_allowed_fraction_or_says_why(
    request, tmp_path_factory, dataset_name
):
    from gnnbackdoor.errors import ConfigError

    graphs = DATASETS.get(dataset_name)().fetch(_location(request, tmp_path_factory, dataset_name))
    for train_fraction in (0.001, 0.05, 0.5, 0.667, 0.8, 0.999):
        for val_fraction in (0.0, 0.1, 0.5, 0.99):
            try:
                split = split_graphs(graphs, 0, train_fraction, val_fraction)
            except ConfigError as error:
                assert "\n" not in str(error) and "graphs" in str(error)
                continue
            total = len(split.train) + len(split.val) + len(split.test)
            assert total == len(graphs) and split.train and split.test
