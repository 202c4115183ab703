"""Every graph-classification attack through the same checks (a Captum-style case list)."""

from __future__ import annotations

import copy

import networkx as nx
import pytest
import torch

from gnnbackdoor.attacks import ATTACKS, GraphAttack
from gnnbackdoor.attacks.sba_degree import SBADegree
from gnnbackdoor.attacks.triggers import SubgraphTriggerAttack
from gnnbackdoor.contracts.results import TriggeredGraphs
from gnnbackdoor.datasets.graph import degree_features, one_hot_degree

from .conftest import make_context

#: (registered name, fast parameters) - adding an attack here runs it through every check.
CASES = [
    ("sba", {}),
    ("sba", {"pattern": "small_world"}),
    ("sba", {"pattern": "preferential_attachment"}),
    ("sba", {"pattern": "complete"}),
    ("exp-ba", {"explainer": "saliency"}),
    ("exp-ba", {"explainer": "gnnexplainer", "explainer_epochs": 3, "placement": "least"}),
    ("motif-ba", {"max_graphs": 10, "samples_per_graph": 5}),
    ("motif-ba", {"placement": "degree", "max_graphs": 10, "samples_per_graph": 5}),
    ("sba-degree", {}),
    ("gta", {"bilevel_epochs": 2, "pretrain_epochs": 1, "generator_steps": 1}),
]
#: Attacks that need one-hot degree features (COLLAB's); their cases run on the tiny graphs
#: with ``x`` re-encoded as the one-hot degree.
DEGREE_FEATURED = {"sba-degree"}
IDS = [f"{name}-{'-'.join(map(str, params.values())) or 'default'}" for name, params in CASES]


def test_every_graph_attack_has_a_case():
    covered = {name for name, _ in CASES}
    registered = {
        n
        for n, c in ATTACKS.items()
        if issubclass(c, GraphAttack) and not n.startswith("test-")  # test doubles
    }
    assert registered <= covered


def build(name, params, **extra) -> SubgraphTriggerAttack:
    return ATTACKS.get(name)(target_class=1, injection_ratio=0.2, trigger_size=4, **params, **extra)


def graphs_for(name, graphs):
    """The tiny graphs as attack ``name`` needs them (copies re-encoded as one-hot degree for
    :data:`DEGREE_FEATURED`)."""
    if name in DEGREE_FEATURED:
        return one_hot_degree([g.clone() for g in graphs])
    return graphs


def snapshot(graphs):
    return [(g.x.clone(), g.edge_index.clone(), g.y.clone()) for g in graphs]


def unchanged(graphs, snap) -> bool:
    return all(
        torch.equal(g.x, x) and torch.equal(g.edge_index, e) and torch.equal(g.y, y)
        for g, (x, e, y) in zip(graphs, snap, strict=True)
    )


def edges_of(graph) -> set[tuple[int, int]]:
    return {(int(u), int(v)) for u, v in graph.edge_index.t().tolist()}


def check_embedding(attack, original, triggered, positions):
    """The trigger sits exactly at ``positions``; nothing else changed."""
    pos = set(positions)
    assert len(positions) == attack.size_ == 4
    inside = lambda e: e[0] in pos and e[1] in pos  # noqa: E731
    before, after = edges_of(original), edges_of(triggered)
    assert {e for e in before if not inside(e)} == {e for e in after if not inside(e)}
    induced = nx.Graph()
    induced.add_nodes_from(positions)
    induced.add_edges_from(e for e in after if inside(e))
    if hasattr(attack, "trigger_"):  # a fixed pattern: the induced subgraph is the trigger
        mapping = {i: p for i, p in enumerate(positions)}
        expected = nx.relabel_nodes(attack.trigger_.to_networkx(), mapping)
        assert set(map(frozenset, induced.edges())) == set(map(frozenset, expected.edges()))
    others = [v for v in range(int(original.num_nodes)) if v not in pos]
    assert torch.equal(triggered.x[others], original.x[others])
    if isinstance(attack, SBADegree):  # the trigger nodes' features follow their new degree
        assert torch.equal(triggered.x, degree_features(triggered, triggered.x.size(1)))
    elif not hasattr(attack, "net_"):  # only GTA writes features
        assert torch.equal(triggered.x, original.x)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_poison_and_activate(name, params, tiny_graph_dataset):
    ctx = make_context(graphs_for(name, tiny_graph_dataset))
    attack = build(name, params).fit(ctx)
    train = ctx.split.train
    snap = snapshot(train)
    result = attack.poison(train)
    # the injection ratio is honoured and only the chosen graphs change
    assert len(result.poisoned_index) == round(0.2 * len(train))
    assert unchanged(train, snap)
    for i, graph in enumerate(result.graphs):
        if i in result.poisoned_index:
            assert graph is not train[i]
            assert int(graph.y) == 1
            check_embedding(attack, train[i], graph, attack.poison_positions_[i])
        else:
            assert graph is train[i]
    # non-target graphs are preferred for poisoning
    assert all(int(train[i].y) == 0 for i in result.poisoned_index)
    # activation: copies, labels kept, inputs untouched
    test = ctx.split.test
    snap = snapshot(test)
    triggered = attack.activate(test)
    assert isinstance(triggered, TriggeredGraphs)
    assert unchanged(test, snap)
    assert len(triggered) == len(test) and triggered.sources() == list(range(len(test)))
    for original, new, positions in zip(test, triggered.graphs, triggered.positions, strict=True):
        assert new is not original and torch.equal(new.y, original.y)
        check_embedding(attack, original, new, positions)
    assert not hasattr(attack, "activation_positions_")  # results are values, not state
    info = attack.describe()
    for key in ("trigger_size", "injection_ratio", "target_class", "poison_positions"):
        assert key in info
    assert info["poison_positions"]["count"] == len(result.poisoned_index)


@pytest.mark.parametrize(("name", "params"), CASES[:-1:3] + CASES[-1:], ids=IDS[:-1:3] + IDS[-1:])
def test_backdoor_returns_a_trained_model(name, params, tiny_graph_dataset):
    ctx = make_context(graphs_for(name, tiny_graph_dataset))
    attack = build(name, params).fit(ctx)
    model = attack.backdoor(ctx)
    assert model is not ctx.clean_model
    assert len(attack.poisoned_index_) == round(0.2 * len(ctx.split.train))


@pytest.mark.parametrize(("name", "params"), [CASES[0], CASES[-1]], ids=[IDS[0], IDS[-1]])
def test_poison_validation_poisons_the_validation_graphs_only_when_asked(
    name, params, tiny_graph_dataset, monkeypatch
):
    seen = {}

    def fake_train(self, model, graphs, callback=None, desc="train", val=None):
        seen[desc] = (list(graphs), val)

    monkeypatch.setattr(type(make_context(tiny_graph_dataset, train_clean=False)), "train_model",
                        fake_train)  # fmt: skip
    runs = {}
    for flag in (False, True):
        ctx = make_context(tiny_graph_dataset, train_clean=False)
        attack = build(name, params, poison_validation=flag).fit(ctx)
        snap = snapshot(ctx.split.val)
        attack.backdoor(ctx)
        train, val = seen["backdoored"]
        assert unchanged(ctx.split.val, snap)  # the split itself is never modified
        runs[flag] = (attack, train, val, ctx)
    attack, train, val, ctx = runs[False]
    assert unchanged(val, snapshot(ctx.split.val))
    assert attack.describe()["num_val_poisoned"] == 0
    attack, train_on, val_on, ctx = runs[True]
    changed = [i for i, (a, b) in enumerate(zip(val_on, ctx.split.val, strict=True)) if a is not b]
    assert len(changed) == max(1, round(0.2 * len(ctx.split.val)))
    assert all(int(val_on[i].y) == 1 for i in changed)
    assert attack.describe()["num_val_poisoned"] == len(changed)
    # switching it on leaves the training graphs' poisoning as it was
    assert runs[True][0].poisoned_index_ == runs[False][0].poisoned_index_
    for a, b in zip(train_on, runs[False][1], strict=True):
        assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.y, b.y)


def test_trigger_fraction_follows_the_average_graph_size(tiny_graph_dataset):
    ctx = make_context(tiny_graph_dataset, train_clean=False)
    attack = ATTACKS.get("sba")(trigger_fraction=0.5, target_class=1).fit(ctx)
    average = sum(g.num_nodes for g in ctx.split.train) / len(ctx.split.train)
    assert attack.size_ == round(0.5 * average)
    assert attack.trigger_.size == attack.size_


def test_graphs_smaller_than_the_trigger_are_skipped(tiny_graph_dataset):
    ctx = make_context(tiny_graph_dataset, train_clean=False)
    attack = ATTACKS.get("sba")(trigger_size=8, target_class=1, injection_ratio=1.0).fit(ctx)
    result = attack.poison(ctx.split.train)
    assert all(ctx.split.train[i].num_nodes >= 8 for i in result.poisoned_index)
    triggered = attack.activate(ctx.split.test)
    large = [i for i, g in enumerate(ctx.split.test) if g.num_nodes >= 8]
    assert len(triggered) == len(large) and triggered.source == large
    for i, graph in zip(large, triggered.graphs, strict=True):
        assert graph.num_nodes == ctx.split.test[i].num_nodes


def test_motif_ba_picks_the_rarest_motif(tiny_graph_dataset):
    ctx = make_context(tiny_graph_dataset, train_clean=False)
    params = {"trigger_size": 4, "target_class": 1, "placement": "degree", "max_graphs": 30}
    # 4-node connected subgraphs of cycles are paths, of stars are stars
    observed = ATTACKS.get("motif-ba")(motif_rule="rarest_observed", **params).fit(ctx)
    counts = observed.motif_counts_
    assert set(counts) and counts[observed.trigger_.name] == min(counts.values())
    shape = observed.trigger_.to_networkx()
    assert nx.is_isomorphic(shape, nx.path_graph(4)) or nx.is_isomorphic(shape, nx.star_graph(3))
    # counting never-seen motifs too, the rarest and densest is K4
    ctx = make_context(tiny_graph_dataset, train_clean=False)
    unseen = ATTACKS.get("motif-ba")(motif_rule="rarest", **params).fit(ctx)
    assert nx.is_isomorphic(unseen.trigger_.to_networkx(), nx.complete_graph(4))
    assert unseen.describe()["motif_frequency"] == 0


def test_fit_does_not_modify_the_parameters(tiny_graph_dataset):
    ctx = make_context(tiny_graph_dataset, train_clean=False)
    attack = ATTACKS.get("sba")(target_class=1)
    params = copy.deepcopy(attack.params())
    attack.fit(ctx)
    assert attack.params() == params


def test_explainer_scores_are_informative_for_a_saturated_model(tiny_graph_dataset):
    from gnnbackdoor.attacks.importance import gnnexplainer_scores

    ctx = make_context(tiny_graph_dataset)
    model = ctx.clean_model
    with torch.no_grad():  # make the classifier absurdly confident
        model.head[-1].weight.mul_(1e4)
    graph = ctx.split.test[0].clone()
    noise = torch.Generator().manual_seed(0)
    graph.x = torch.rand(graph.num_nodes, graph.x.size(1), generator=noise)
    scores = gnnexplainer_scores(model, graph, 20, torch.Generator().manual_seed(0))
    assert scores.unique().numel() > 1


def test_node_drop_scores_do_not_depend_on_chunking(tiny_graph_dataset, monkeypatch):
    from gnnbackdoor.attacks import importance

    ctx = make_context(tiny_graph_dataset)
    graph = ctx.split.test[0]
    whole = importance.node_drop_scores(ctx.clean_model, graph)
    monkeypatch.setattr(importance, "MAX_BATCH_EDGES", 1)
    assert torch.allclose(importance.node_drop_scores(ctx.clean_model, graph), whole, atol=1e-6)


def feature_blind(model):
    """``model`` with its first layer's feature weights zeroed: its output no longer depends
    on the node features (like the clean GIN on AIDS, whose logits follow the node count)."""
    with torch.no_grad():
        model.encoder.convs[0].nn.lins[0].weight.zero_()
    return model


def test_exp_ba_does_not_place_by_node_id_when_nothing_is_important(tiny_graph_dataset):
    from gnnbackdoor.attacks.importance import gnnexplainer_scores

    ctx = make_context(tiny_graph_dataset)
    feature_blind(ctx.clean_model)
    graph = ctx.split.test[0]
    scores = gnnexplainer_scores(ctx.clean_model, graph, 5, torch.Generator().manual_seed(0))
    assert bool((scores == 0).all())  # the explainer has nothing to say about any node
    attack = build("exp-ba", {"explainer_epochs": 5}).fit(ctx)
    triggered = attack.activate(ctx.split.test)
    first = [sorted(p) == list(range(4)) for p in triggered.positions]
    assert len(triggered) == len(ctx.split.test) and not all(first)
    assert attack.describe()["graphs_without_importance"] == len(ctx.split.test)


def test_gnnexplainer_leaves_the_model_in_its_mode(tiny_graph_dataset):
    from gnnbackdoor.attacks.importance import gnnexplainer_scores

    ctx = make_context(tiny_graph_dataset)
    model = ctx.clean_model.eval()
    gnnexplainer_scores(model, ctx.split.test[0], 3, torch.Generator().manual_seed(0))
    assert not model.training


def test_motif_ba_does_not_place_by_node_id_when_nothing_is_important(tiny_graph_dataset):
    ctx = make_context(tiny_graph_dataset)
    with torch.no_grad():  # every node the same: the model's output ignores the graph
        for p in ctx.clean_model.parameters():
            p.zero_()
    attack = build("motif-ba", {"max_graphs": 10, "samples_per_graph": 5}).fit(ctx)
    triggered = attack.activate(ctx.split.test)
    first = [sorted(p) == list(range(4)) for p in triggered.positions]
    assert not all(first)
    assert attack.describe()["graphs_without_importance"] == len(ctx.split.test)


@pytest.mark.parametrize("model", ["sage", "gat", "gin"])
def test_gta_learns_its_topology_on_every_registered_victim(model, tiny_graph_dataset):
    """GTA's topology generator trains through the victim's edge weights (GTA Sec. 4, f(A, X)
    with a weighted A): on SAGE and GAT too, whose weighted layers take them."""
    ctx = make_context(tiny_graph_dataset, model=model)
    attack = build("gta", {"bilevel_epochs": 1, "generator_steps": 2}).fit(ctx)
    attack.backdoor(ctx)
    assert attack.trigger_info()["topology_learned"] is True
    structure = [p for name, p in attack.net_.named_parameters() if name.startswith("structure_")]
    assert structure
    for p in structure:  # Adam saw non-zero topology gradients during the fit
        assert float(attack.optimiser_.state[p]["exp_avg"].abs().sum()) > 0
