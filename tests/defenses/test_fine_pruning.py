"""Fine-pruning (Liu et al. 2018 carried to GNNs): its own rules on a tiny trained GIN, and
what every repair owes (registered with a source, inputs untouched, deterministic for a seed,
one-line errors for bad settings)."""

from __future__ import annotations

import copy

import pytest
import torch

from gnnbackdoor.contracts.context import GraphContext
from gnnbackdoor.datasets.splits import split_graphs
from gnnbackdoor.defenses import DEFENSES, ModelRepairDefense
from gnnbackdoor.defenses.fine_pruning import (
    FinePruning,
    head_input_layer,
    unit_activity,
    units_to_prune,
)
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig, predict_graphs


@pytest.fixture
def setting(tiny_graph_dataset):
    split = split_graphs(tiny_graph_dataset, 0, train_fraction=0.6, val_fraction=0.2)
    torch.manual_seed(0)
    ctx = GraphContext(
        split,
        MODELS.get("gcn")(hidden_channels=8, num_layers=2),
        GraphTrainConfig(max_epochs=3, batch_size=8),
        0,
        torch.Generator().manual_seed(0),
    )
    model = ctx.train_new_model(split.train)
    return ctx, model, list(split.test)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_registered_as_a_repair_with_a_source():
    cls = DEFENSES.get("fine-pruning")
    assert issubclass(cls, ModelRepairDefense) and "Liu" in cls.reference


def test_units_to_prune_are_the_least_active():
    activity = torch.tensor([0.5, 0.1, 0.9, 0.1, 0.3])
    assert units_to_prune(activity, 0.4) == [1, 3]
    assert units_to_prune(activity, 0.0) == []
    assert units_to_prune(activity, 0.99) == [0, 1, 3, 4]


def test_pruned_units_stay_zero_after_fine_tuning_and_the_model_is_plain(setting):
    ctx, model, graphs = setting
    activity = unit_activity(model, graphs, 64)
    expected = units_to_prune(activity, 0.5)
    result = FinePruning(prune_fraction=0.5, fine_tune_epochs=3).repair(model, graphs, ctx)
    layer = head_input_layer(result.model)
    assert expected and torch.all(layer.weight[:, expected] == 0)
    kept = [u for u in range(activity.numel()) if u not in expected]
    assert torch.any(layer.weight[:, kept] != 0)
    # the mask is made permanent: a plain state dict of the victim's architecture
    assert "weight" in dict(layer.named_parameters()) and not hasattr(layer, "weight_mask")
    fresh = ctx.build_model()
    fresh.load_state_dict(result.model.state_dict())
    assert result.info["fp_pruned_units"] == len(expected) == 4
    assert result.info["fp_fine_tune_loss_last"] >= 0
    assert 0 <= result.info["fp_pruned_activity_share"] <= 0.5


def test_prune_only_changes_nothing_but_the_pruned_columns(setting):
    ctx, model, graphs = setting
    before = copy.deepcopy(model)
    result = FinePruning(prune_fraction=0.25, fine_tune_epochs=0).repair(model, graphs, ctx)
    pruned = [int(u) for u in torch.nonzero(head_input_layer(result.model).weight[0] == 0)]
    after = result.model.state_dict()
    assert set(after) == set(before.state_dict())
    for name, a in before.state_dict().items():
        b = after[name]
        if name == "head.0.weight":
            keep = [u for u in range(a.size(1)) if u not in pruned]
            assert torch.equal(a[:, keep], b[:, keep])
        else:
            assert torch.equal(a, b), name
    assert "fp_fine_tune_loss_last" not in result.info


def test_inputs_untouched_and_deterministic_for_a_seed(setting):
    ctx, model, graphs = setting
    copies = copy.deepcopy(graphs)
    outs = []
    for _ in range(2):
        ctx.generator = torch.Generator().manual_seed(5)
        torch.manual_seed(3)
        result = FinePruning(fine_tune_epochs=2).repair(copy.deepcopy(model), graphs, ctx)
        outs.append(predict_graphs(result.model, graphs)[1])
    assert torch.equal(outs[0], outs[1])
    for g, c in zip(graphs, copies, strict=True):
        assert _same((g.x, g.edge_index, g.y), (c.x, c.edge_index, c.y))


@pytest.mark.parametrize(
    "setting_", [{"prune_fraction": 1.0}, {"lr": 0.0}, {"fine_tune_epochs": -1}, {"batch_size": 0}]
)
def test_bad_settings_fail_in_one_line(setting_):
    with pytest.raises(ConfigError) as error:
        FinePruning(**setting_)
    assert "\n" not in str(error.value) and next(iter(setting_)) in str(error.value)
