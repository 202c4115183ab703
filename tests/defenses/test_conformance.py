"""Every registered defense, with its default settings, through the same contract on a tiny
graph set: it runs inside the graph pipeline under an attack, returns values of the declared
types, and the pipeline computes the figures from them."""

from __future__ import annotations

import math

import pytest
import torch

from gnnbackdoor.contracts.context import GraphContext
from gnnbackdoor.contracts.results import RepairResult, ShieldResult, TrainingDefenseResult
from gnnbackdoor.datasets.splits import split_graphs
from gnnbackdoor.defenses import DEFENSES, InputShield, ModelRepairDefense, TrainingDefense
from gnnbackdoor.defenses.shielding import ModelPredictFn
from gnnbackdoor.experiments.pipelines import GraphPipeline
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.base import GraphClassifier
from gnnbackdoor.models.train_graph import GraphTrainConfig, predict_graphs
from gnnbackdoor.utils.timing import PhaseTimer

GRAPH_DEFENSES = sorted(
    name
    for name, cls in DEFENSES.items()
    if cls.task == "graph" and not name.startswith("test-")  # test doubles
)


KINDS = {"repair": ModelRepairDefense, "shield": InputShield, "training": TrainingDefense}


def test_there_are_defenses_of_every_kind():
    kinds = {
        kind
        for n in GRAPH_DEFENSES
        for kind, cls in KINDS.items()
        if issubclass(DEFENSES.get(n), cls)
    }
    assert kinds == set(KINDS)
    for name in GRAPH_DEFENSES:
        assert issubclass(DEFENSES.get(name), tuple(KINDS.values())), name


@pytest.mark.parametrize("name", GRAPH_DEFENSES)
def test_every_defense_runs_in_the_pipeline(name, tiny_graph_dataset, graph_run):
    # GCleaner's teacher check holds out a share of the defender's graphs: at least 2 of them
    defense = DEFENSES.get(name)(**({"holding_rate": 0.1} if name == "gcleaner" else {}))
    out = GraphPipeline().execute(graph_run(tiny_graph_dataset, defense), PhaseTimer())
    metrics = out.metrics
    for key in ("defended_acc", "defended_asr", "clean_acc", "asr"):
        value = metrics[key]
        assert math.isnan(value) or 0.0 <= value <= 1.0, key
    if isinstance(defense, ModelRepairDefense):
        assert metrics["num_defender_graphs"] >= 1
        assert metrics["num_eval_graphs"] + metrics["num_defender_graphs"] == 16
    elif isinstance(defense, TrainingDefense):
        # trained on the poisoned training split; evaluated on the whole test split
        assert "num_defender_graphs" not in metrics and metrics["num_eval_graphs"] == 16
        assert metrics["num_train_graphs"] >= 1 and "der" in metrics
        if "num_flagged" in metrics:
            assert 0 <= metrics["num_flagged"] <= metrics["num_train_graphs"]
            for key in ("detector_precision", "detector_recall"):
                assert math.isnan(metrics[key]) or 0.0 <= metrics[key] <= 1.0, key
    else:
        assert metrics["queries"] >= 1 and metrics["queried_graphs"] >= metrics["num_eval_graphs"]


@pytest.mark.parametrize("name", GRAPH_DEFENSES)
def test_every_defense_returns_its_kinds_value(name, tiny_graph_dataset):
    split = split_graphs(tiny_graph_dataset, 0, train_fraction=0.6, val_fraction=0.2)
    torch.manual_seed(0)
    spec = MODELS.get("gin")(hidden_channels=16, num_layers=2)
    ctx = GraphContext(
        split,
        spec,
        GraphTrainConfig(max_epochs=3, batch_size=8),
        0,
        torch.Generator().manual_seed(0),
    )
    model = ctx.train_new_model(split.train)
    ctx.clean_model = model
    defense = DEFENSES.get(name)(**({"holding_rate": 0.1} if name == "gcleaner" else {}))
    if isinstance(defense, ModelRepairDefense):
        defender, evaluation = defense.split_defender_data(
            split.test, torch.Generator().manual_seed(1), dataset_size=len(tiny_graph_dataset)
        )
        assert defender and evaluation and not set(defender) & set(evaluation)
        assert sorted(defender + evaluation) == list(range(len(split.test)))
        result = defense.repair(model, [split.test[i] for i in defender], ctx)
        assert isinstance(result, RepairResult)
        assert isinstance(result.model, GraphClassifier)
        labels = predict_graphs(result.model, split.test)[0]
        assert labels.shape == (len(split.test),)
        for probe_name, probe in result.probes.items():
            assert isinstance(probe_name, str) and 0 <= probe.target < split.num_classes
        assert all(isinstance(k, str) for k in result.info)
    elif isinstance(defense, TrainingDefense):
        result = defense.train(list(split.train), list(split.val), ctx, victim=model)
        assert isinstance(result, TrainingDefenseResult)
        assert isinstance(result.model, GraphClassifier) and result.model is not model
        labels = predict_graphs(result.model, split.test)[0]
        assert labels.shape == (len(split.test),)
        for positions in (result.kept, result.flagged):
            assert positions is None or set(positions) <= set(range(len(split.train)))
        assert all(isinstance(k, str) for k in result.info)
    else:
        if getattr(defense, "requires_model", False):  # white-box: the model and clean graphs
            predict_fn = ModelPredictFn(model, clean_graphs=split.val)
        else:
            predict_fn = lambda graphs: predict_graphs(model, graphs)[0]  # noqa: E731
        result = defense.predict(predict_fn, split.test)
        assert isinstance(result, ShieldResult)
        assert result.labels.shape == (len(split.test),)
        assert len(result.details) in (0, len(split.test))
        assert result.queries >= 1
