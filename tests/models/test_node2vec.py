"""DeepWalk / node2vec victims on tiny graphs: the walk sampler follows edges and p/q, the
victims train through the link trainer, embed unseen graphs by refreshing only changed nodes,
repeat for a seed, and are attacked black-box only."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.index import index2ptr
from torch_geometric.utils import sort_edge_index

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.cli import main
from gnnbackdoor.contracts.context import LinkContext
from gnnbackdoor.datasets.splits import split_links
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.experiments.pipelines import LinkPipeline
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.node2vec import random_walk
from gnnbackdoor.models.train_link import LinkTrainConfig
from gnnbackdoor.utils.seeding import RunStreams, Stage

SMALL = {"embedding_dim": 8, "walk_length": 6, "context_size": 3, "walks_per_node": 2}


def ring(n: int = 16) -> Data:
    pairs = [(i, (i + 1) % n) for i in range(n)] + [(i, (i + 5) % n) for i in range(0, n, 2)]
    src = [a for a, b in pairs] + [b for a, b in pairs]
    dst = [b for a, b in pairs] + [a for a, b in pairs]
    x = (torch.rand(n, 4, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    return Data(x=x, edge_index=torch.tensor([src, dst]), num_nodes=n)


def csr(graph: Data):
    row, col = sort_edge_index(graph.edge_index, num_nodes=graph.num_nodes)
    return index2ptr(row, graph.num_nodes), col


def test_walks_follow_edges_and_repeat_for_a_seed():
    graph = ring()
    rowptr, col = csr(graph)
    edges = {(int(a), int(b)) for a, b in graph.edge_index.t()}
    start = torch.arange(16).repeat(3)
    walks = random_walk(rowptr, col, start, 7, 0.5, 2.0, torch.Generator().manual_seed(1))
    again = random_walk(rowptr, col, start, 7, 0.5, 2.0, torch.Generator().manual_seed(1))
    assert walks.shape == (48, 8) and torch.equal(walks, again)
    assert torch.equal(walks[:, 0], start)
    for walk in walks.tolist():
        assert all((a, b) in edges for a, b in itertools.pairwise(walk))


def test_return_parameter_changes_how_often_walks_step_back():
    graph = ring(30)
    rowptr, col = csr(graph)
    start = torch.arange(30).repeat(40)

    def back_rate(p: float, q: float) -> float:
        walks = random_walk(rowptr, col, start, 10, p, q, torch.Generator().manual_seed(0))
        return float((walks[:, 2:] == walks[:, :-2]).float().mean())

    assert back_rate(0.1, 1.0) > 2 * back_rate(1.0, 1.0) > 2 * back_rate(10.0, 1.0)


def test_isolated_nodes_stay_put():
    graph = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=3)
    rowptr, col = csr(graph)
    walks = random_walk(rowptr, col, torch.tensor([2, 0]), 4, 1.0, 1.0, torch.Generator())
    assert walks[0].tolist() == [2] * 5


def context(model: str, seed: int = 0, **spec) -> LinkContext:
    graph = ring()
    streams = RunStreams(seed)
    with streams.running(Stage.DATA_SPLIT):
        split = split_links(graph, val=0.1, test=0.1)
    config = LinkTrainConfig(max_epochs=20, patience=20)
    spec_obj = MODELS.get(model)(**{**SMALL, **spec})
    return LinkContext(graph, split, spec_obj, config, seed, streams.torch_generator(Stage.VICTIM))


@pytest.mark.parametrize("name", ["deepwalk", "node2vec"])
def test_victim_trains_and_refreshes_only_changed_nodes(name):
    ctx = context(name)
    model = ctx.build_model()
    ctx.train_model(model, ctx.split.train)
    train = ctx.split.train
    fitted = model.encode(train.x, train.edge_index)
    assert torch.equal(fitted, model.embedding)
    # one new node linked to node 0: only node 0 and the new node move
    extra = torch.tensor([[0, 16], [16, 0]])
    x = torch.cat([train.x, train.x[:1]])
    before = copy.deepcopy(train)
    z = model.encode(x, torch.cat([train.edge_index, extra], dim=1))
    assert z.shape == (17, SMALL["embedding_dim"])
    moved = (z[:16] != fitted).any(dim=1)
    assert moved.nonzero().view(-1).tolist() == [0]
    assert torch.equal(train.edge_index, before.edge_index)  # inputs untouched
    probabilities = model.predict_proba(train.x, train.edge_index, train.pos_edge_label_index)
    assert bool(((probabilities >= 0) & (probabilities <= 1)).all())


def test_same_seed_same_embeddings_and_scores():
    out = []
    for _ in range(2):
        ctx = context("node2vec", seed=4)
        with RunStreams(4).running(Stage.VICTIM):  # as the pipeline runs the victim stage
            model = ctx.build_model()
            ctx.train_model(model, ctx.split.train)
        out.append(model.predict_proba(ctx.split.test.x, ctx.split.test.edge_index,
                                       ctx.split.test.pos_edge_label_index))  # fmt: skip
    assert torch.equal(out[0], out[1])


def test_state_dict_carries_the_fitted_embedding():
    ctx = context("deepwalk")
    model = ctx.build_model()
    ctx.train_model(model, ctx.split.train)
    other = ctx.build_model()
    other.load_state_dict(model.state_dict())
    train = ctx.split.train
    assert torch.equal(other.encode(train.x, train.edge_index), model.embedding)


@pytest.mark.parametrize("blackbox_target", ["pretrained", "scratch"])
def test_black_box_link_backdoor_on_deepwalk(blackbox_target):
    ctx = context("deepwalk")
    clean = ctx.build_model()
    ctx.train_model(clean, ctx.split.train)
    ctx.clean_model = clean
    attack = ATTACKS.get("link-backdoor")(
        p=0.2, num_test_targets=6, surrogate="gae", blackbox_target=blackbox_target
    ).fit(ctx)
    backdoored = attack.backdoor(ctx)
    targets = attack.test_targets(ctx)
    triggered = attack.activate(ctx.split.train, targets)
    metrics = LinkPipeline._attack_metrics(ctx, clean, backdoored, targets, triggered)
    assert 0 <= metrics["asr"] <= 1 or metrics["num_eligible"] == 0
    mode = f"black-box (gae, trigger backdoored-surrogate, target {blackbox_target})"
    assert attack.describe()["mode"] == mode
    assert attack.describe()["surrogate_best_epoch"] is not None


def test_white_box_attack_on_deepwalk_is_refused():
    ctx = context("deepwalk")
    ctx.clean_model = ctx.build_model()
    with pytest.raises(ConfigError, match="black-box"):
        ATTACKS.get("erb")(p=0.2, num_test_targets=4).fit(ctx)


@pytest.mark.parametrize(
    "model, setting, fragment",
    [
        ("deepwalk", "model.p=2", "p = q = 1"),
        ("node2vec", "model.q=0", "model.q=0: expected a finite number > 0"),
        ("node2vec", "model.context_size=50", "walk_length"),
    ],
)
def test_bad_settings_give_one_line(model, setting, fragment, tmp_path, capsys):
    status = main(
        [
            "run", "--task", "link", "--dataset", "SBM", "--model", model,
            "--set", setting, "--out", str(tmp_path), "--quiet",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and fragment in err


@pytest.mark.parametrize("name", ["deepwalk", "node2vec"])
def test_victim_learns_the_sbm_above_chance(name, offline_location):
    from gnnbackdoor.datasets import load_dataset
    from gnnbackdoor.metrics.ranking import evaluate_links
    from gnnbackdoor.models.train_link import train_link_model

    graph = load_dataset("SBM", offline_location)
    streams = RunStreams(0)
    with streams.running(Stage.DATA_SPLIT):
        split = split_links(graph)
    torch.manual_seed(0)
    model = MODELS.get(name)(embedding_dim=32).build(graph.num_features)
    train_link_model(model, split.train, split.val, LinkTrainConfig(max_epochs=60, patience=60))
    assert evaluate_links(model, split.test)["auc"] > 0.6


def test_registered_with_sources():
    assert "DeepWalk" in MODELS.get("deepwalk").reference
    assert "node2vec" in MODELS.get("node2vec").reference
    assert not MODELS.get("deepwalk").graph_differentiable
