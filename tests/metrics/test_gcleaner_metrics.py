"""Table IV's trigger cosine and the collapse / degenerate-victim flags (issue 20)."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Data

from gnnbackdoor.metrics import (
    already_target_share,
    class_histogram,
    collapsed,
    majority_share,
    trigger_embedding_cosine,
)
from gnnbackdoor.models import MODELS


def _model():
    torch.manual_seed(0)
    return MODELS.get("gin")(hidden_channels=8, num_layers=2).build(3, 2)


def _with_features(graphs, rows):
    out = []
    for g in graphs:
        x = g.x.clone()
        x[:3] = rows
        out.append(Data(x=x, edge_index=g.edge_index, y=g.y))
    return out


def test_trigger_cosine_is_one_for_the_same_trigger_and_paired_graph_by_graph(
    tiny_graph_dataset,
):
    model = _model().eval()  # the metric embeds in eval mode (batch norm's running stats)
    graphs = tiny_graph_dataset[:6]
    original = _with_features(graphs, torch.tensor([1.0, 1.0, 1.0]))
    assert trigger_embedding_cosine(model, original, original) == pytest.approx(1.0)
    recovered = _with_features(graphs, torch.tensor([0.0, 0.0, 5.0]))
    value = trigger_embedding_cosine(model, original, recovered)
    assert -1.0 <= value < 0.999
    # against the model's embeddings computed by hand, graph by graph
    with torch.no_grad():
        expected = torch.stack(
            [
                torch.nn.functional.cosine_similarity(
                    model.embed(o.x, o.edge_index, None), model.embed(r.x, r.edge_index, None)
                )[0]
                for o, r in zip(original, recovered, strict=True)
            ]
        ).mean()
    assert value == pytest.approx(float(expected), abs=1e-5)
    assert trigger_embedding_cosine(model, original, recovered, batch_size=2) == pytest.approx(
        value, abs=1e-5
    )


def test_trigger_cosine_needs_paired_lists(tiny_graph_dataset):
    model = _model()
    with pytest.raises(ValueError, match="pair them"):
        trigger_embedding_cosine(model, tiny_graph_dataset[:3], tiny_graph_dataset[:2])
    assert math.isnan(trigger_embedding_cosine(model, [], []))


def test_class_histogram_and_majority_share():
    predicted = torch.tensor([0, 1, 1, 1])
    assert class_histogram(predicted, 3) == [0.25, 0.75, 0.0]
    assert majority_share(predicted, 3) == 0.75
    assert class_histogram(torch.tensor([], dtype=torch.long), 2) == [0.0, 0.0]


def test_collapse_flag_compares_with_the_datas_majority_share():
    labels = torch.tensor([0] * 50 + [1] * 50)
    assert collapsed(torch.ones(100, dtype=torch.long), labels, 2)  # constant: 100 > 50 + 10
    assert not collapsed(labels, labels, 2)  # follows the labels
    assert not collapsed(torch.tensor([0] * 40 + [1] * 60), labels, 2)  # exactly 10 points
    assert collapsed(torch.tensor([0] * 39 + [1] * 61), labels, 2)  # more than 10 points
    skewed = torch.tensor([0] * 20 + [1] * 80)  # AIDS-like: 80 % majority
    assert not collapsed(torch.ones(100, dtype=torch.long), skewed, 2, margin=0.25)
    assert collapsed(torch.ones(100, dtype=torch.long), skewed, 2)


def test_already_target_share_counts_eligible_graphs_only():
    labels = torch.tensor([0, 0, 1, 1, 1])
    predicted = torch.tensor([1, 0, 1, 1, 0])  # target 1: eligible are the two 0-labelled
    assert already_target_share(predicted, labels, target=1) == 0.5
    assert already_target_share(predicted, labels, target=0) == pytest.approx(1 / 3)
    assert math.isnan(already_target_share(predicted, torch.ones(5, dtype=torch.long), 1))


def test_implant_flag_needs_a_high_asr_well_above_the_clean_models():
    from gnnbackdoor.metrics import backdoor_implanted

    assert backdoor_implanted(0.9, 0.1)
    assert not backdoor_implanted(0.45, 0.0)  # below 50 %
    assert not backdoor_implanted(0.95, 0.9)  # the trigger fools the clean model too
    assert backdoor_implanted(0.7, 0.5)  # exactly 20 points above
    assert not backdoor_implanted(float("nan"), 0.0)


def test_der_is_backdoorbenchs_rating():
    from gnnbackdoor.metrics import defense_effectiveness_rating as der

    assert der(0.9, 0.9, 0.8, 0.8) == 0.5  # nothing changed
    assert der(1.0, 0.0, 0.8, 0.8) == 1.0  # ASR removed at no cost
    assert abs(der(0.9, 0.1, 0.8, 0.7) - 0.85) < 1e-12  # (0.8 - 0.1 + 1) / 2
    assert der(0.1, 0.5, 0.7, 0.9) == 0.5  # a worse ASR or a better accuracy count as 0
    assert der(float("nan"), 0.1, 0.8, 0.7) != der(float("nan"), 0.1, 0.8, 0.7)  # nan
