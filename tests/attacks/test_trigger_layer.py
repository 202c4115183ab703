"""The shared trigger layer against a frozen copy of the code it replaced (GTA's and
GCleaner's generators, sub-adjacency, Montage and explainer calls): identical tensors where
the algorithms were identical, the same graph (edge order aside) where only the layout
differed; and the randomness comes only from the generator handed in."""

from __future__ import annotations

import pytest
import torch
from tests.attacks import frozen_trigger_code as old
from torch_geometric.data import Data

from gnnbackdoor.attacks.feature_domain import FeatureDomain, FeatureKind
from gnnbackdoor.attacks.importance import MAX_LOGIT, ExplainAlgorithm, explain_node_scores
from gnnbackdoor.attacks.trigger_layer import (
    TriggerGenerator,
    TriggerSlots,
    embed_trigger,
    seed_from,
    straight_through_adjacency,
    triggered_graphs,
)
from gnnbackdoor.defenses.trigger_recovery import (
    RecoveryConfig,
    recover_trigger,
    recovery_generator,
)
from gnnbackdoor.models import MODELS


def _model(in_channels: int = 3, name: str = "gin"):
    torch.manual_seed(0)
    return MODELS.get(name)(hidden_channels=16, num_layers=2).build(in_channels, 2)


def _graphs(count: int = 6, features: int = 5) -> list[Data]:
    """Random graphs of 6-9 nodes with one-hot features over ``features - 1`` labels (the last
    label never occurs)."""
    gen = torch.Generator().manual_seed(1)
    graphs = []
    for i in range(count):
        n = 6 + i % 4
        dense = torch.rand(n, n, generator=gen) < 0.4
        dense = torch.triu(dense, diagonal=1)
        edge_index = (dense | dense.T).nonzero().T
        labels = torch.randint(0, features - 1, (n,), generator=gen)
        x = torch.nn.functional.one_hot(labels, features).float()
        graphs.append(Data(x=x, edge_index=edge_index, y=torch.tensor([i % 2])))
    return graphs


def _positions(graphs: list[Data], k: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return [torch.randperm(int(g.num_nodes), generator=gen)[:k] for g in graphs]


def _same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    pa, pb = list(a.parameters()), list(b.parameters())
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb, strict=True):
        assert torch.equal(x, y)


def _same_gradients(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x.grad, y.grad)


def test_straight_through_adjacency_equals_both_old_forms():
    logits = torch.randn(4, 5, 5, generator=torch.Generator().manual_seed(0))
    new = straight_through_adjacency(logits)
    assert torch.equal(new, old.straight_through_adjacency(logits))
    # GTA's inline form: sigmoid of the symmetrised logits, zeroed diagonal, hard forward
    probs = torch.sigmoid((logits + logits.transpose(1, 2)) / 2) * (1 - torch.eye(5))
    assert torch.equal(new, (probs > 0.5).float())


@pytest.mark.parametrize("kind", ["onehot", "binary", "range", "unit"])
def test_gta_generator_equals_the_old_one(kind):
    graphs = _graphs()
    k, features = 3, graphs[0].x.size(1)
    domain = FeatureDomain.from_graphs(graphs, kind)
    torch.manual_seed(7)
    before = old.GTATriggerGenerator(k, features, 16, domain)
    torch.manual_seed(7)
    after = TriggerGenerator(k, features, 16, domain, reads_structure=True, shared_body=False)
    _same_parameters(before, after)
    positions = _positions(graphs, k)
    adjacency = torch.stack(
        [old.sub_adjacency(g, p) for g, p in zip(graphs, positions, strict=True)]
    )
    x = torch.stack([g.x[p] for g, p in zip(graphs, positions, strict=True)])
    edges_old, feats_old = before(adjacency, x)
    feats_new, edges_new = after(x, adjacency)
    assert torch.equal(feats_old, feats_new)
    # GTA computed ``hard + p - p.detach()``, which is 0/1 only up to rounding (1 + p - p
    # can be 0.99999994); the shared form adds ``(p - p.detach())``, exactly 0
    assert torch.equal((edges_old > 0.5).float(), edges_new)
    assert torch.allclose(edges_old, edges_new, atol=1e-6, rtol=0)
    weights = torch.randn(2, *edges_old.shape[1:], generator=torch.Generator().manual_seed(3))
    (edges_old * weights[0, :, :]).sum().add(feats_old.pow(2).sum()).backward()
    (edges_new * weights[0, :, :]).sum().add(feats_new.pow(2).sum()).backward()
    for a, b in zip(before.parameters(), after.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


@pytest.mark.parametrize("mode", ["onehot", "simplex", "range", "keep"])
def test_recovery_generator_equals_the_old_one(mode):
    graphs = _graphs()
    x_all = torch.cat([g.x for g in graphs])
    low, high = x_all.min(0).values, x_all.max(0).values
    torch.manual_seed(5)
    before = old.RecoveryTriggerGenerator(3, x_all.size(1), 16, low, high, mode)
    torch.manual_seed(5)
    after = recovery_generator(3, x_all.size(1), 16, low, high, mode)
    _same_parameters(before, after)
    slots = torch.stack([g.x[p] for g, p in zip(graphs, _positions(graphs, 3), strict=True)])
    feats_old, adj_old = before(slots)
    feats_new, adj_new = after(slots)
    assert torch.equal(feats_old, feats_new) and torch.equal(adj_old, adj_new)
    (feats_old.pow(2).sum() + adj_old.sum()).backward()
    (feats_new.pow(2).sum() + adj_new.sum()).backward()
    _same_gradients(before, after)


def test_slot_adjacency_equals_gtas_sub_adjacency():
    graphs = _graphs()
    positions = _positions(graphs, 4)
    expected = torch.stack(
        [old.sub_adjacency(g, p) for g, p in zip(graphs, positions, strict=True)]
    )
    assert torch.equal(TriggerSlots.build(graphs, positions).slot_adjacency(), expected)
    assert expected.sum() > 0  # the case is not vacuous


@pytest.mark.parametrize("weighted", [True, False])
def test_montage_equals_gcleaners_old_one(weighted):
    graphs = _graphs()
    positions = _positions(graphs, 3)
    gen = torch.Generator().manual_seed(4)
    features = torch.rand(len(graphs), 3, graphs[0].x.size(1), generator=gen)
    adjacency = straight_through_adjacency(torch.randn(len(graphs), 3, 3, generator=gen))
    new = embed_trigger(TriggerSlots.build(graphs, positions), features, adjacency, weighted)
    previous = old.embed_trigger(
        old.TriggerSlots.build(graphs, positions), features, adjacency, weighted
    )
    for a, b in zip(new, previous, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    hard_new = triggered_graphs(TriggerSlots.build(graphs, positions), features, adjacency)
    hard_old = old.triggered_graphs(old.TriggerSlots.build(graphs, positions), features, adjacency)
    for a, b in zip(hard_new, hard_old, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)


def _edge_table(edge_index: torch.Tensor, weight: torch.Tensor | None) -> list[tuple]:
    w = weight.tolist() if weight is not None else [1.0] * edge_index.size(1)
    return sorted(zip(edge_index[0].tolist(), edge_index[1].tolist(), w, strict=True))


@pytest.mark.parametrize("model_name", ["gin", "gat"])
def test_gtas_triggered_batch_is_the_same_graph_as_before(model_name):
    """GTA's old per-graph embedding listed each graph's edges then its trigger's; the shared
    Montage lists all remaining edges, then all trigger edges. Same edges, weights and
    features; the model's output agrees up to float summation order."""
    graphs = _graphs()
    k, features = 3, graphs[0].x.size(1)
    model = _model(features, model_name).eval()  # no dropout
    domain = FeatureDomain.from_graphs(graphs, FeatureKind.AUTO)
    torch.manual_seed(7)
    net = TriggerGenerator(k, features, 16, domain, reads_structure=True, shared_body=False)
    torch.manual_seed(7)
    net_old = old.GTATriggerGenerator(k, features, 16, domain)
    items = list(zip(graphs, _positions(graphs, k), strict=True))
    x_old, ei_old, w_old, batch_old = old.gta_differentiable_batch(net_old, k, items, model)
    slots = TriggerSlots.build([g for g, _ in items], [p for _, p in items])
    feats, adjacency = net(slots.slot_features(), slots.slot_adjacency())
    x_new, ei_new, w_new = embed_trigger(slots, feats, adjacency, model.supports_edge_weight)
    assert torch.equal(x_old, x_new) and torch.equal(batch_old, slots.batch.batch)
    assert (w_old is None) == (w_new is None)
    rounded = [(s, d, round(w, 5)) for s, d, w in _edge_table(ei_old, w_old)]  # see above
    assert rounded == _edge_table(ei_new, w_new)
    out_old = model(x_old, ei_old, batch_old, w_old)
    out_new = model(x_new, ei_new, slots.batch.batch, w_new)
    assert torch.allclose(out_old, out_new, atol=1e-5)
    out_old.sum().backward()
    out_new.sum().backward()
    for a, b in zip(net_old.parameters(), net.parameters(), strict=True):
        if a.grad is None:  # a model without edge weights: the topology generator gets none
            assert b.grad is None
        else:
            assert torch.allclose(a.grad, b.grad, atol=1e-5)


def test_gnnexplainer_adapter_equals_exp_bas_old_call():
    graphs = _graphs(3)
    model = _model(graphs[0].x.size(1))
    for graph in graphs:
        before = old.gnnexplainer_scores(model, graph, 10, torch.Generator().manual_seed(0))
        (after,) = explain_node_scores(
            model, [graph], "gnnexplainer", 10, torch.Generator().manual_seed(0), MAX_LOGIT
        )
        assert torch.equal(before, after)


@pytest.mark.parametrize("algorithm", ["gnnexplainer", "pgexplainer"])
def test_explainer_adapter_equals_gcleaners_old_call(algorithm):
    """GCleaner's old call drew from torch's global RNG; seeded with the value the adapter
    draws from its generator, it gives the same scores."""
    graphs = _graphs(5)
    model = _model(graphs[0].x.size(1)).eval()
    seed = seed_from(torch.Generator().manual_seed(0))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        before = old._pyg_explainer_scores(model, old._batch_of(graphs), algorithm, 5)
    after = explain_node_scores(
        model, graphs, algorithm, 5, torch.Generator().manual_seed(0), max_logit=None
    )
    assert torch.equal(before, torch.cat(after))


def test_explainers_and_recovery_draw_only_from_the_generator_handed_in():
    graphs = _graphs(6)
    model = _model(graphs[0].x.size(1))
    positions = _positions(graphs, 3)
    results = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        scores = explain_node_scores(
            model, graphs, ExplainAlgorithm.GNNEXPLAINER, 5, torch.Generator().manual_seed(3)
        )
        recovery = recover_trigger(
            model, graphs, positions, 3, RecoveryConfig(epochs=2, batch_size=3),
            generator=torch.Generator().manual_seed(3),
        )  # fmt: skip
        assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
        results.append((torch.cat(scores), recovery))
    (s0, r0), (s1, r1) = results
    assert torch.equal(s0, s1)
    assert r0.history == r1.history and r0.similarity == r1.similarity
    for a, b in zip(r0.triggered, r1.triggered, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
