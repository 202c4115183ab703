"""SBA with the trigger nodes' one-hot degree recomputed (``sba-degree``)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.attacks.sba_degree import encodes_degree
from gnnbackdoor.datasets.graph import degree_features, one_hot_degree
from gnnbackdoor.errors import ConfigError

from .conftest import make_context


def degree_graphs(graphs):
    return one_hot_degree([g.clone() for g in graphs])


def fitted(name, graphs, seed=0):
    ctx = make_context(graphs, seed=seed, train_clean=False)
    attack = ATTACKS.get(name)(target_class=1, injection_ratio=0.25, trigger_size=4).fit(ctx)
    return attack, ctx


def test_refuses_features_that_are_not_degrees(tiny_graph_dataset):
    with pytest.raises(ConfigError, match="one-hot node-degree features"):
        fitted("sba-degree", tiny_graph_dataset)


def test_same_trigger_and_positions_as_sba_only_the_trigger_rows_change(tiny_graph_dataset):
    graphs = degree_graphs(tiny_graph_dataset)
    plain, ctx = fitted("sba", graphs)
    refreshed, _ = fitted("sba-degree", graphs)
    assert torch.equal(plain.trigger_.edges, refreshed.trigger_.edges)
    a, b = plain.activate(ctx.split.test), refreshed.activate(ctx.split.test)
    assert a.positions == b.positions
    changed_somewhere = False
    for g_plain, g_new, positions in zip(a.graphs, b.graphs, b.positions, strict=True):
        assert torch.equal(g_plain.edge_index, g_new.edge_index)
        others = torch.ones(int(g_new.num_nodes), dtype=torch.bool)
        others[positions] = False
        assert torch.equal(g_new.x[others], g_plain.x[others])
        assert torch.equal(g_new.x, degree_features(g_new, g_new.x.size(1)))
        changed_somewhere |= not torch.equal(g_new.x, g_plain.x)
    assert changed_somewhere  # the tiny cycles and stars do change degree under a trigger


def test_poisoned_graphs_carry_refreshed_features_and_inputs_stay_untouched(tiny_graph_dataset):
    graphs = degree_graphs(tiny_graph_dataset)
    attack, ctx = fitted("sba-degree", graphs)
    before = [g.x.clone() for g in ctx.split.train]
    result = attack.poison(ctx.split.train)
    assert all(torch.equal(g.x, x) for g, x in zip(ctx.split.train, before, strict=True))
    for i in result.poisoned_index:
        g = result.graphs[i]
        assert torch.equal(g.x, degree_features(g, g.x.size(1)))
    assert attack.describe()["features"].startswith("trigger nodes' one-hot degree")


def test_degree_is_capped_at_the_encoded_width():
    star = Data(edge_index=torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 0, 0, 0, 0]]),
                num_nodes=5)  # fmt: skip
    x = degree_features(star, 3)
    assert x.shape == (5, 3)
    assert torch.equal(x.argmax(1), torch.tensor([2, 1, 1, 1, 1]))  # degree 4 capped at 2
    star.x = x
    assert encodes_degree(star)
    star.x = torch.ones(5, 3)
    assert not encodes_degree(star)


def test_deterministic_for_a_seed(tiny_graph_dataset):
    graphs = degree_graphs(tiny_graph_dataset)
    runs = []
    for _ in range(2):
        attack, ctx = fitted("sba-degree", graphs, seed=3)
        out = attack.activate(ctx.split.test)
        runs.append([(g.edge_index, g.x) for g in out.graphs])
    for (e1, x1), (e2, x2) in zip(*runs, strict=True):
        assert torch.equal(e1, e2) and torch.equal(x1, x2)
