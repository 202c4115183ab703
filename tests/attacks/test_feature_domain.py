"""Generated trigger features stay in the clean features' domain (GTA's feature generator)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.attacks.feature_domain import FeatureDomain, FeatureKind, infer_kind
from gnnbackdoor.errors import ConfigError

from .conftest import make_context


def graphs_with(x: torch.Tensor) -> list[Data]:
    edge_index = torch.tensor([[0, 1], [1, 0]])
    return [Data(x=x[i : i + 2], edge_index=edge_index) for i in range(0, x.size(0), 2)]


def test_infer_kind():
    eye = torch.eye(4)
    assert infer_kind(eye) is FeatureKind.ONEHOT
    assert infer_kind(torch.tensor([[1.0, 1.0], [0.0, 0.0]])) is FeatureKind.BINARY
    assert infer_kind(torch.tensor([[0.5, 3.0], [1.0, 2.0]])) is FeatureKind.RANGE


def test_onehot_rows_use_seen_labels_and_pass_gradients():
    x = torch.zeros(4, 5)
    x[[0, 1, 2, 3], [0, 2, 2, 0]] = 1  # labels 1, 3, 4 never occur
    domain = FeatureDomain.from_graphs(graphs_with(x), "auto")
    assert domain.kind is FeatureKind.ONEHOT
    raw = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(0))
    raw[..., 4] = 100.0  # an unseen label may not win
    raw.requires_grad_(True)
    out = domain(raw)
    assert torch.equal(out.detach().sum(-1), torch.ones(6, 3))
    assert set(out.detach().argmax(-1).unique().tolist()) <= {0, 2}
    assert bool(((out.detach() == 0) | (out.detach() == 1)).all())
    (out * torch.randn_like(out)).sum().backward()
    assert raw.grad is not None and bool(raw.grad[..., [0, 2]].abs().sum() > 0)


def test_binary_and_range_domains():
    binary = FeatureDomain.from_graphs(graphs_with(torch.tensor([[1.0, 1.0], [0.0, 0.0]])), "auto")
    raw = torch.randn(10, 2, requires_grad=True)
    out = binary(raw)
    assert bool(((out.detach() == 0) | (out.detach() == 1)).all())
    out.sum().backward()
    assert bool(raw.grad.abs().sum() > 0)
    x = torch.tensor([[30.0, -1.0], [225.0, 2.0]])
    ranged = FeatureDomain.from_graphs(graphs_with(x), "auto")
    out = ranged(torch.randn(100, 2) * 10)
    assert bool((out >= x.min(0).values).all() and (out <= x.max(0).values).all())
    assert bool((FeatureDomain.from_graphs(graphs_with(x), "unit")(torch.randn(5, 2)) < 1).all())


def test_gta_trigger_features_are_valid_rows(tiny_graph_dataset):
    ctx = make_context(tiny_graph_dataset)
    attack = ATTACKS.get("gta")(target_class=1, trigger_size=4, bilevel_epochs=1).fit(ctx)
    graph = ctx.split.test[0]
    triggered, positions = attack._embed(graph)
    rows = triggered.x[positions]
    assert torch.equal(rows.sum(-1), torch.ones(4))  # one-hot, like the clean rows
    assert attack.describe()["trigger_feature_domain"] == "onehot"
    legacy = ATTACKS.get("gta")(target_class=1, trigger_size=4, feature_domain="unit").fit(ctx)
    triggered, positions = legacy._embed(graph)
    rows = triggered.x[positions]
    assert bool(((rows > 0) & (rows < 1)).all())  # the old free values in (0, 1)


def test_gta_rejects_unknown_feature_domain():
    with pytest.raises(ConfigError, match="feature_domain"):
        ATTACKS.get("gta")(target_class=1, feature_domain="gaussian")


# --- issue 14: trigger types inside the data's distribution -------------------------------


def test_min_share_keeps_rare_labels_out_and_prior_weights_by_frequency():
    x = torch.zeros(100, 4)
    x[:70, 0] = 1  # 70 %
    x[70:95, 1] = 1  # 25 %
    x[95:99, 2] = 1  # 4 %
    x[99, 3] = 1  # 1 %
    graphs = graphs_with(x)
    strict = FeatureDomain.from_graphs(graphs, "auto", min_share=0.05)
    assert strict.seen.tolist() == [True, True, False, False]
    raw = torch.tensor([[0.0, 0.0, 5.0, 9.0]])
    assert int(strict(raw).argmax()) in (0, 1)
    # a frequency prior: equal raw scores go to the most common label, and a rarer label
    # needs a margin of log(70 / 25) to win against the most common one
    weighted = FeatureDomain.from_graphs(graphs, "auto", prior=1.0)
    assert int(weighted(torch.zeros(1, 4)).argmax()) == 0
    assert int(weighted(torch.tensor([[0.0, 1.2, 0.0, 0.0]])).argmax()) == 1
    assert int(weighted(torch.tensor([[0.0, 0.9, 0.0, 0.0]])).argmax()) == 0
    # the legacy domain: every present label, no prior
    legacy = FeatureDomain.from_graphs(graphs, "auto")
    assert legacy.seen.all() and int(legacy(raw).argmax()) == 3
    # the most common label stays allowed whatever the threshold
    assert FeatureDomain.from_graphs(graphs, "auto", min_share=0.9).seen.tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_feature_row_share():
    from gnnbackdoor.attacks.feature_domain import feature_row_share

    clean = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert feature_row_share(torch.tensor([[1.0, 0.0]]), clean) == 0.5
    assert feature_row_share(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), clean) == 0.25
    assert feature_row_share(torch.tensor([[-0.0, 1.0]]), clean) == 0.5  # -0 equals 0
    assert feature_row_share(torch.empty(0, 2), clean) != feature_row_share(
        torch.empty(0, 2), clean
    )  # NaN


def rare_type_context(tiny_graph_dataset):
    """The tiny dataset with a 4th label carried by one node of one training graph only."""
    graphs = [
        Data(x=torch.cat([g.x, torch.zeros(g.num_nodes, 1)], dim=1), edge_index=g.edge_index, y=g.y)
        for g in tiny_graph_dataset
    ]
    ctx = make_context(graphs)
    ctx.split.train[0].x[0] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    return ctx


def test_gta_trigger_types_are_common_clean_types_and_rarity_is_recorded(tiny_graph_dataset):
    ctx = rare_type_context(tiny_graph_dataset)
    attack = ATTACKS.get("gta")(target_class=1, trigger_size=3, bilevel_epochs=1).fit(ctx)
    assert attack.domain_.seen.tolist() == [True, True, True, False]  # 1 node of ~300
    with torch.no_grad():  # push every trigger node towards the rare label
        attack.net_.feature_head.bias.view(3, 4)[:, 3] = 1e3
    attack.backdoor(ctx)
    info = attack.describe()
    rarity = info["trigger_feature_rarity"]
    clean_x = torch.cat([g.x for g in ctx.split.train])
    shares = clean_x.mean(0)
    assert float(shares[:3].min()) - 1e-6 <= rarity <= float(shares[:3].max()) + 1e-6
    legacy = ATTACKS.get("gta")(
        target_class=1,
        trigger_size=3,
        bilevel_epochs=1,
        trigger_type_min_share=0.0,
        trigger_type_prior=0.0,
    ).fit(rare_type_context(tiny_graph_dataset))
    assert bool(legacy.domain_.seen.all()) and bool((legacy.domain_.log_prior == 0).all())


def test_gta_single_node_activation(tiny_graph_dataset):
    ctx = make_context(tiny_graph_dataset)
    attack = ATTACKS.get("gta")(target_class=1, trigger_size=4, bilevel_epochs=1).fit(ctx)
    graphs = ctx.split.test[:3]
    copies, positions = attack.activate_single_node(graphs)
    assert len(copies) == 3 * 4 and [len(p) for p in positions] == [1] * 12
    for k, (copy, (pos,)) in enumerate(zip(copies, positions, strict=True)):
        graph = graphs[k // 4]
        assert torch.equal(copy.edge_index, graph.edge_index) and torch.equal(copy.y, graph.y)
        changed = (copy.x != graph.x).any(dim=1).nonzero().view(-1).tolist()
        assert set(changed) <= {pos}
        assert float(copy.x[pos].sum()) == 1.0  # a one-hot trigger row
    # deterministic without a generator; one node only with ``node``
    again, _ = attack.activate_single_node(graphs)
    assert all(torch.equal(a.x, b.x) for a, b in zip(copies, again, strict=True))
    only, _ = attack.activate_single_node(graphs, node=2)
    assert len(only) == 3 and all(torch.equal(only[g].x, copies[g * 4 + 2].x) for g in range(3))
    with pytest.raises(ValueError):
        attack.activate_single_node(graphs, node=4)
