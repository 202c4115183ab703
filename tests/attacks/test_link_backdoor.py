"""Link-Backdoor on tiny graphs: trigger budgets, Eq. 6 symmetry, the clean graph untouched,
ASR over eligible links only, and one-line errors for bad parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.data import Data

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.attacks.link_backdoor import LinkBackdoor, LinkBackdoorNoInjection
from gnnbackdoor.attacks.link_triggers import (
    TriggerPattern,
    TriggerPlacement,
    attach,
    attack_gradients,
    candidate_pairs,
    symmetric_gradient_matrix,
    update_pattern,
)
from gnnbackdoor.cli import main
from gnnbackdoor.contracts.context import LinkContext
from gnnbackdoor.datasets.splits import split_links
from gnnbackdoor.experiments.pipelines import LinkPipeline
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_link import LinkTrainConfig
from gnnbackdoor.utils.seeding import RunStreams, Stage


def undirected(pairs: list[tuple[int, int]]) -> torch.Tensor:
    return torch.tensor(
        [
            [a for a, b in pairs] + [b for a, b in pairs],
            [b for a, b in pairs] + [a for a, b in pairs],
        ]
    )


def ring_graph(n: int = 16, features: int = 6) -> Data:
    """A ring with chords (every node degree 3-4), binary features."""
    pairs = [(i, (i + 1) % n) for i in range(n)] + [(i, (i + 5) % n) for i in range(0, n, 2)]
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(n, features, generator=gen) < 0.4).float()
    return Data(x=x, edge_index=undirected(pairs), num_nodes=n)


def tiny_context(model: str = "gae", seed: int = 0, epochs: int = 30) -> LinkContext:
    graph = ring_graph()
    streams = RunStreams(seed)
    with streams.running(Stage.DATA_SPLIT):
        split = split_links(graph, val=0.1, test=0.1)
    config = LinkTrainConfig(max_epochs=epochs, patience=epochs)
    with streams.running(Stage.VICTIM) as generator:
        ctx = LinkContext(graph, split, MODELS.get(model)(), config, seed, generator)
        clean = ctx.build_model()
        ctx.train_model(clean, split.train, desc="clean")
    ctx.clean_model = clean
    ctx.generator = streams.torch_generator(Stage.ATTACK)
    return ctx


def check_budgets(attack: LinkBackdoor, pattern: TriggerPattern, x_init: torch.Tensor) -> None:
    assert 1 <= pattern.num_links <= attack.Q
    pairs = candidate_pairs(attack.m)[:, pattern.structure]
    assert bool((pairs.max(dim=0).values >= 2).all()), "every trigger link touches a trigger node"
    if pattern.features is not None:
        assert bool(((pattern.features >= 0) & (pattern.features <= 1)).all())
        assert bool((pattern.feature_changes() <= attack.feature_budget).all())
        assert torch.equal(pattern.initial_features, x_init)


def test_candidate_pairs_touch_injected_nodes():
    pairs = candidate_pairs(3)
    assert pairs.size(1) == 2 * 3 + 3
    assert bool((pairs.max(dim=0).values >= 2).all())
    assert not any(int(i) == 0 and int(j) == 1 for i, j in pairs.t())  # never the target link


def test_attach_keeps_the_graph_and_appends_the_trigger(path_graph):
    original = copy.deepcopy(path_graph)
    targets = torch.tensor([[0, 1], [3, 5]])
    placement = TriggerPlacement.injected(targets, 6, 2)
    pattern = TriggerPattern(
        torch.tensor([True, False, False, True, True]), torch.ones(2, 4), torch.ones(2, 4)
    )
    out = attach(path_graph, placement, pattern)
    assert torch.equal(path_graph.x, original.x)  # input untouched
    assert torch.equal(path_graph.edge_index, original.edge_index)
    assert out.num_nodes == 6 + 2 * 2
    assert torch.equal(out.x[:6], original.x) and bool((out.x[6:] == 1).all())
    # the original edges come first, unchanged; 3 links x 2 targets x 2 directions follow
    assert torch.equal(out.edge_index[:, : original.edge_index.size(1)], original.edge_index)
    added = out.edge_index[:, original.edge_index.size(1) :]
    assert added.size(1) == 3 * 2 * 2
    assert bool((added.max(dim=0).values >= 6).all()), "every added link touches a new node"


def test_fit_and_every_update_respect_the_budgets():
    ctx = tiny_context()
    attack = LinkBackdoor(m=2, Q=2, p=0.2, feature_budget=2, init_updates=3, num_test_targets=8)
    attack.fit(ctx)
    x_init = attack.initial_trigger_.initial_features
    check_budgets(attack, attack.initial_trigger_, x_init)
    for _ in range(4):
        attack._update(ctx.clean_model, ctx.split.train)
        check_budgets(attack, attack.trigger_, x_init)
    num_edges = ctx.split.train.pos_edge_label_index.size(1)
    assert attack.poison_targets_.size(1) == round(0.2 * num_edges)


def test_poisoned_graph_changes_nothing_outside_the_trigger():
    ctx = tiny_context()
    train_before = copy.deepcopy(ctx.split.train)
    attack = LinkBackdoor(p=0.3, init_updates=2, num_test_targets=8).fit(ctx)
    poisoned = attack.poisoned_graph(ctx.split.train)
    n, e = train_before.num_nodes, train_before.edge_index.size(1)
    assert torch.equal(ctx.split.train.x, train_before.x)
    assert torch.equal(ctx.split.train.edge_index, train_before.edge_index)
    assert torch.equal(poisoned.x[:n], train_before.x)
    assert torch.equal(poisoned.edge_index[:, :e], train_before.edge_index)
    added = poisoned.edge_index[:, e:]
    assert bool((added.max(dim=0).values >= n).all())
    assert poisoned.num_nodes == n + attack.m * attack.poison_targets_.size(1)
    # targets labelled existing, never message-passing edges
    labels = poisoned.pos_edge_label_index
    assert torch.equal(labels[:, -attack.poison_targets_.size(1) :], attack.poison_targets_)
    mp = {(int(a), int(b)) for a, b in poisoned.edge_index.t()}
    assert not any((int(a), int(b)) in mp for a, b in attack.poison_targets_.t())


def test_test_targets_are_held_out_non_edges():
    ctx = tiny_context()
    attack = LinkBackdoor(p=0.2, init_updates=0, num_test_targets=10).fit(ctx)
    targets = attack.test_targets(ctx)
    n = ctx.graph.num_nodes
    key = lambda pairs: set((pairs.min(0).values * n + pairs.max(0).values).tolist())  # noqa: E731
    edges = key(ctx.graph.edge_index)
    assert not key(targets) & edges
    assert not key(targets) & key(attack.poison_targets_)
    assert not key(targets) & key(ctx.split.test.neg_edge_label_index)
    triggered = attack.activate(ctx.split.train, targets)
    assert triggered.num_nodes == n + attack.m * targets.size(1)


def test_eq6_structure_gradient_is_symmetric():
    ctx = tiny_context(epochs=10)
    attack = LinkBackdoor(m=3, Q=9, p=0.2, init_updates=0, num_test_targets=4).fit(ctx)
    grads = attack_gradients(
        ctx.clean_model, ctx.split.train, attack.poison_targets_, attack.placement_, attack.trigger_
    )
    matrix = symmetric_gradient_matrix(grads, attack.m)
    assert torch.allclose(matrix, matrix.transpose(1, 2))
    assert bool((torch.diagonal(matrix, dim1=1, dim2=2) == 0).all())
    assert bool((matrix[:, 0, 1] == 0).all())  # the target link is not a trigger entry
    assert torch.allclose(grads.structure, (grads.directed[0] + grads.directed[1]) / 2)
    assert grads.structure.abs().sum() > 0 and grads.features is not None


def test_eq6_matches_a_dense_adjacency_gradient():
    """The edge-weight gradient equals the gradient w.r.t. a dense adjacency entry."""
    graph = ring_graph(8, 3)
    torch.manual_seed(0)
    model = MODELS.get("gae")().build(3)
    targets = torch.tensor([[0], [4]])
    placement = TriggerPlacement.injected(targets, 8, 1)
    pattern = TriggerPattern(torch.tensor([True, False]), torch.ones(1, 3), torch.ones(1, 3))
    grads = attack_gradients(model, graph, targets, placement, pattern)

    adj = torch.zeros(9, 9)
    adj[graph.edge_index[0], graph.edge_index[1]] = 1
    adj[0, 8] = adj[8, 0] = 1
    adj.requires_grad_(True)
    x = torch.cat([graph.x, torch.ones(1, 3)])
    index = adj.detach().nonzero().t()
    index = torch.cat([index, torch.tensor([[4, 8], [8, 4]])], dim=1)  # candidate v-w, off
    weight = torch.cat([adj[index[0, :-2], index[1, :-2]], adj[4, 8].view(1), adj[8, 4].view(1)])
    model.eval()
    z = model.encode(x, index, weight)
    loss = ((torch.sigmoid(model.score(z, targets)) - 1) ** 2).mean()
    (dense,) = torch.autograd.grad(loss, adj)
    assert torch.allclose(grads.directed[0][0, 0], dense[0, 8], atol=1e-6)
    assert torch.allclose(grads.directed[1][0, 1], dense[8, 4], atol=1e-6)


def test_update_step_follows_the_gradient_sign_and_q():
    m, q = 2, 2
    pattern = TriggerPattern(
        torch.tensor([True, True, False, False, True]), torch.zeros(2, 4), torch.zeros(2, 4)
    )
    from gnnbackdoor.attacks.link_triggers import TriggerGradients

    grad_a = torch.tensor([[-3.0, 1.0, -2.0, -1.0, -0.5]])
    grad_x = torch.tensor([[[-1.0, -2.0, 3.0, -0.1], [0.5, -0.2, -0.3, 0.0]]])
    grads = TriggerGradients(0.5, grad_a, (grad_a, grad_a), grad_x)
    out = update_pattern(pattern, grads, max_links=q, feature_budget=1)
    assert out.num_links == q
    # u-w1 (most negative among u-links) and v-w1 (-2, best v-link) are kept
    assert out.structure.tolist() == [True, False, True, False, False]
    # features: 0 - sign(g) clamped: negative gradients switch entries on, budget 1 per node
    assert out.features.tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    assert m == pattern.m


def test_no_injection_ablation_uses_existing_nodes():
    ctx = tiny_context()
    attack = LinkBackdoorNoInjection(p=0.2, init_updates=2, num_test_targets=6).fit(ctx)
    n = ctx.split.train.num_nodes
    poisoned = attack.poisoned_graph(ctx.split.train)
    assert poisoned.num_nodes == n and torch.equal(poisoned.x, ctx.split.train.x)
    hosts = attack.placement_.slots[:, 2:]
    assert bool((hosts < n).all())
    assert not bool((hosts == attack.placement_.slots[:, :1]).any())
    existing = {(int(a), int(b)) for a, b in ctx.split.train.edge_index.t()}
    added = poisoned.edge_index[:, ctx.split.train.edge_index.size(1) :]
    assert not any((int(a), int(b)) in existing for a, b in added.t())


def test_pipeline_counts_only_eligible_links():
    """ASR's denominator is the links the clean model predicts absent (pipeline's job)."""
    ctx = tiny_context()
    attack = LinkBackdoor(
        p=0.2, init_updates=1, warmup_epochs=0, update_every=5, num_test_targets=20
    ).fit(ctx)
    backdoored = attack.backdoor(ctx)
    targets = attack.test_targets(ctx)
    triggered = attack.activate(ctx.split.train, targets)
    metrics = LinkPipeline._attack_metrics(ctx, ctx.clean_model, backdoored, targets, triggered)
    from gnnbackdoor.models.train_link import link_scores

    eligible = link_scores(ctx.clean_model, ctx.split.train, targets) < 0.5
    hit = link_scores(backdoored, triggered, targets) >= 0.5
    assert metrics["num_eligible"] == int(eligible.sum())
    if int(eligible.sum()):
        assert metrics["asr"] == pytest.approx(float((hit & eligible).sum()) / int(eligible.sum()))
    assert ctx.timings["per_update_s"] > 0
    assert attack.describe()["trigger_updates"] >= 1


@pytest.mark.parametrize(
    "setting, fragment",
    [
        ("attack.m=0", "attack.m=0: expected an integer >= 1"),
        ("attack.Q=0", "attack.Q=0: expected an integer >= 1"),
        ("attack.p=0", "attack.p=0: expected a finite number in (0, 1]"),
        ("attack.p=1.5", "attack.p=1.5: expected a finite number in (0, 1]"),
        ("attack.surrogate=gcn", "not a link model"),
        ("attack.surrogate=nosuch", "not a link model"),
    ],
)
def test_bad_parameters_give_one_line_errors(setting, fragment, tmp_path, capsys):
    status = main(
        [
            "run", "--task", "link", "--dataset", "SBM", "--model", "gae",
            "--attack", "link-backdoor", "--set", setting, "--out", str(tmp_path), "--quiet",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and fragment in err


def test_registered_names():
    assert ATTACKS.get("link-backdoor") is LinkBackdoor
    assert ATTACKS.get("link-backdoor-no-inj") is LinkBackdoorNoInjection
    assert LinkBackdoor(surrogate="VGAE").surrogate == "vgae"


@pytest.mark.parametrize("model", ["vgae", "gic", "arga", "arvga"])
def test_every_link_victim_can_be_backdoored(model):
    ctx = tiny_context(model, epochs=6)
    attack = LinkBackdoor(p=0.2, init_updates=1, warmup_epochs=0, update_every=2,
                          num_test_targets=6).fit(ctx)  # fmt: skip
    backdoored = attack.backdoor(ctx)
    triggered = attack.activate(ctx.split.train, attack.test_targets(ctx))
    assert backdoored.encode(triggered.x, triggered.edge_index).size(0) == triggered.num_nodes
