"""The contracts between components and pipelines: the values components return and the
protocols the run contexts satisfy."""

from __future__ import annotations

import pytest
import torch

from gnnbackdoor.contracts import (
    GraphContext,
    GraphTrainer,
    LinkContext,
    LinkTrainer,
    Probe,
    RepairResult,
    ScoredModel,
    TriggeredGraphs,
)
from gnnbackdoor.datasets.splits import split_graphs
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig


def test_triggered_graphs_need_one_placement_and_source_per_graph(path_graph):
    triggered = TriggeredGraphs([path_graph, path_graph], [[0, 1], [2, 3]])
    assert len(triggered) == 2 and triggered.sources() == [0, 1]
    assert TriggeredGraphs([path_graph], [[0]], [4]).sources() == [4]
    with pytest.raises(ValueError):
        TriggeredGraphs([path_graph], [])
    with pytest.raises(ValueError):
        TriggeredGraphs([path_graph], [[0]], [0, 1])


def test_repair_results_and_probes_default_to_the_repaired_model(path_graph):
    model = torch.nn.Linear(2, 2)
    result = RepairResult(model)
    assert result.info == {} and result.probes == {}
    assert Probe([path_graph], 1).model is ScoredModel.REPAIRED


def test_graph_context_is_a_graph_trainer_and_trains_with_its_generator(tiny_graph_dataset):
    split = split_graphs(tiny_graph_dataset, 0, 0.75, 0.2)
    config = GraphTrainConfig(max_epochs=2, batch_size=8)

    def trained(seed: int) -> dict[str, torch.Tensor]:
        spec = MODELS.get("gcn")(hidden_channels=8, num_layers=2, dropout=0.0)
        ctx = GraphContext(split, spec, config, 0, torch.Generator().manual_seed(seed))
        assert isinstance(ctx, GraphTrainer)
        torch.manual_seed(0)  # the same initial weights each time
        return ctx.train_new_model(split.train).state_dict()

    same, again, other = trained(1), trained(1), trained(2)
    assert all(torch.equal(same[k], again[k]) for k in same)
    assert any(not torch.equal(same[k], other[k]) for k in same)  # shuffling follows it


def test_link_context_is_a_link_trainer(path_graph):
    from gnnbackdoor.datasets.splits import LinkSplit
    from gnnbackdoor.models.train_link import LinkTrainConfig

    split = LinkSplit(path_graph, path_graph, path_graph)
    ctx = LinkContext(
        path_graph, split, MODELS.get("gae")(), LinkTrainConfig(), 0, torch.Generator()
    )
    assert isinstance(ctx, LinkTrainer) and not isinstance(ctx, GraphTrainer)
    assert ctx.build_model().encode(path_graph.x, path_graph.edge_index).size(0) == 6
