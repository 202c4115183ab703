"""Victim models: one generic check per family, parametrised over every registered model,
plus training, determinism and the safe save/load round trip."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import MLP

from gnnbackdoor.datasets import load_dataset, split_graphs, split_links
from gnnbackdoor.errors import ConfigError, UserError
from gnnbackdoor.metrics import evaluate_links
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.graph import WeightedGINConv
from gnnbackdoor.models.io import load_model, save_model
from gnnbackdoor.models.train_graph import (
    GraphTrainConfig,
    graph_labels,
    predict_graphs,
    train_graph_model,
)
from gnnbackdoor.models.train_link import LinkTrainConfig, train_link_model
from gnnbackdoor.utils.seeding import RunStreams, Stage

LINK_MODELS = ["gae", "vgae", "gic", "arga", "arvga"]
GRAPH_MODELS = ["gcn", "gat", "gin", "sage"]
EMBEDDING_LINK_MODELS = ["deepwalk", "node2vec"]  # checked in test_node2vec.py


def test_every_registered_model_is_covered_here():
    covered = LINK_MODELS + GRAPH_MODELS + EMBEDDING_LINK_MODELS
    assert sorted(covered) == sorted(name for name, _ in MODELS.items())


@pytest.mark.parametrize("name", LINK_MODELS)
def test_link_model_shapes_and_edge_weight_gradient(name, path_graph):
    torch.manual_seed(0)
    model = MODELS.get(name)().build(4)
    weight = torch.ones(path_graph.edge_index.size(1), requires_grad=True)
    loss, z = model.training_loss(
        path_graph.x,
        path_graph.edge_index,
        path_graph.edge_index[:, :3],
        torch.tensor([[0, 1], [5, 4]]),
        weight,
    )
    assert z.shape[0] == 6 and loss.dim() == 0
    loss.backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all()
    model.eval()
    with torch.no_grad():
        probs = model.predict_proba(path_graph.x, path_graph.edge_index, torch.tensor([[0], [5]]))
    assert probs.shape == (1,) and 0 <= float(probs) <= 1


@pytest.mark.parametrize("name", LINK_MODELS)
def test_link_model_learns_the_sbm_above_chance(name, offline_location):
    graph = load_dataset("SBM", offline_location)
    with RunStreams(0).running(Stage.DATA_SPLIT):
        split = split_links(graph)
    torch.manual_seed(0)
    model = MODELS.get(name)().build(graph.num_features)
    report = train_link_model(
        model, split.train, split.val, LinkTrainConfig(max_epochs=60, patience=60)
    )
    assert report.epochs == 60 and 1 <= report.best_epoch <= 60
    assert evaluate_links(model, split.test)["auc"] > 0.6


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_graph_model_shapes(name, tiny_graph_dataset):
    torch.manual_seed(0)
    model = MODELS.get(name)().build(3, 2)
    batch = Batch.from_data_list(tiny_graph_dataset[:5])
    assert model(batch.x, batch.edge_index, batch.batch).shape == (5, 2)
    assert model.embed(batch.x, batch.edge_index, batch.batch).shape == (5, 64)


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_graph_model_learns_the_motif_dataset(name, offline_location):
    graphs = load_dataset("Motifs", offline_location)[:150]
    split = split_graphs(graphs, seed=0, train_fraction=0.7, val_fraction=0.2)
    torch.manual_seed(0)
    model = MODELS.get(name)().build(8, 3)
    train_graph_model(
        model,
        split.train,
        split.val,
        GraphTrainConfig(max_epochs=40, patience=40, batch_size=16),
        torch.Generator().manual_seed(0),
    )
    predicted, probs = predict_graphs(model, split.test)
    assert probs.shape == (len(split.test), 3)
    assert float((predicted == graph_labels(split.test)).float().mean()) >= 0.6


def test_graph_training_is_deterministic_for_a_seed(tiny_graph_dataset):
    def train_once() -> torch.Tensor:
        torch.manual_seed(3)
        model = MODELS.get("gin")().build(3, 2)
        train_graph_model(
            model,
            tiny_graph_dataset[:30],
            tiny_graph_dataset[30:],
            GraphTrainConfig(max_epochs=5, batch_size=8),
            torch.Generator().manual_seed(3),
        )
        return predict_graphs(model, tiny_graph_dataset)[1]

    assert torch.equal(train_once(), train_once())


def test_weighted_gin_with_unit_weights_is_plain_gin(path_graph):
    torch.manual_seed(0)
    conv = WeightedGINConv(torch.nn.Linear(4, 3))
    ones = torch.ones(path_graph.edge_index.size(1))
    plain = conv(path_graph.x, path_graph.edge_index)
    assert torch.allclose(plain, conv(path_graph.x, path_graph.edge_index, ones))
    half = conv(path_graph.x, path_graph.edge_index, ones * 0.5)
    assert not torch.allclose(plain, half)


@pytest.mark.parametrize("name", ["gin", "gae", "gic"])
def test_save_and_load_round_trip(name, tmp_path, tiny_graph_dataset, path_graph):
    spec = MODELS.get(name)()
    torch.manual_seed(0)
    task_graph = spec.task == "graph"
    model = spec.build(3, 2) if task_graph else spec.build(4)
    save_model(model, spec, tmp_path / "m", 3 if task_graph else 4, 2 if task_graph else None)
    loaded, config = load_model(tmp_path / "m")
    assert config["model"] == name
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_load_refuses_a_folder_without_model_files(tmp_path):
    with pytest.raises(UserError, match="not a saved model"):
        load_model(tmp_path)


def test_weights_file_with_arbitrary_objects_is_refused(tmp_path, tiny_graph_dataset):
    spec = MODELS.get("gcn")()
    save_model(spec.build(3, 2), spec, tmp_path / "m", 3, 2)
    torch.save({"payload": object()}, tmp_path / "m" / "weights.pt")
    with pytest.raises(Exception):  # noqa: B017  (torch's unpickler error type varies)
        load_model(tmp_path / "m")


@pytest.mark.parametrize("values", [{"pool": "median"}, {"num_layers": 0}, {"dropout": 1.5}])
def test_graph_spec_validation(values):
    with pytest.raises(ConfigError):
        MODELS.get("gcn")(**values)


def test_weighted_gin_linear_first_matches_aggregate_first(path_graph):
    """A wide input takes the linear-first path; its output and gradients must equal the
    aggregate-then-MLP rule computed by hand."""
    torch.manual_seed(0)
    wide = torch.rand(path_graph.num_nodes, 12)
    conv = WeightedGINConv(MLP([12, 5, 5], act="relu", norm=None), eps=0.3)
    assert conv._projectable_first_linear(12) is not None
    weights = torch.rand(path_graph.edge_index.size(1), requires_grad=True)
    fast = conv(wide, path_graph.edge_index, weights)
    src, dst = path_graph.edge_index
    summed = torch.zeros_like(wide).index_add_(0, dst, weights.view(-1, 1) * wide[src])
    slow = conv.nn(summed + 1.3 * wide)
    assert torch.allclose(fast, slow, atol=1e-6)
    (grad_fast,) = torch.autograd.grad(fast.sum(), weights)
    (grad_slow,) = torch.autograd.grad(slow.sum(), weights)
    assert torch.allclose(grad_fast, grad_slow, atol=1e-6)
    # a narrow input keeps the plain rule
    assert conv._projectable_first_linear(4) is None


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_sparse_adjacency_path_matches_edge_index_path(name):
    """Unweighted passes go through one sparse adjacency where the layers take it (not GAT):
    logits and parameter gradients must equal the per-edge message path, directed edges
    included."""
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 0], [1, 0, 2, 1, 4, 0, 3]])
    x = torch.rand(5, 7)
    model = MODELS.get(name)(dropout=0.0).build(7, 3)
    assert model.sparse_adjacency == (name != "gat")
    model.sparse_min_mean_degree = 0.0  # convert this sparse toy graph too
    fast = model(x, edge_index)
    fast_grads = torch.autograd.grad(fast.square().sum(), list(model.parameters()))
    model.sparse_adjacency = False
    slow = model(x, edge_index)
    slow_grads = torch.autograd.grad(slow.square().sum(), list(model.parameters()))
    assert torch.allclose(fast, slow, atol=1e-5)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_explainer_mode_keeps_edge_index_order(path_graph):
    """In PyG's explain mode (edge masks in ``edge_index`` order) the sparse form is not used."""
    model = MODELS.get("gcn")().build(4, 2)
    model.sparse_min_mean_degree = 0.0
    assert not model._explaining()
    model.encoder.convs[0].explain = True
    assert model._explaining()
    seen = []
    model.encoder.convs[0].register_forward_pre_hook(lambda _, args: seen.append(args[1]))
    model.encoder.convs[0].explain = False
    model(path_graph.x, path_graph.edge_index)
    assert seen[-1].layout != torch.strided


@pytest.mark.parametrize(
    "edge_index", [[[0, 1, 1, 3], [1, 0, 0, 4]], [[0, 1, 2], [1, 0, 2]]], ids=["repeat", "loop"]
)
def test_repeated_edges_and_self_loops_keep_the_edge_path(edge_index):
    """GCN counts a repeated edge and an explicit self-loop differently in sparse form, so
    such graphs are not converted and the logits stay exactly PyG's."""
    from gnnbackdoor.models.base import sparse_adjacency

    edge_index = torch.tensor(edge_index)
    assert sparse_adjacency(edge_index, 5) is None
    torch.manual_seed(0)
    x = torch.rand(5, 7)
    model = MODELS.get("gcn")(dropout=0.0).build(7, 3)
    model.sparse_min_mean_degree = 0.0
    fast = model(x, edge_index)
    model.sparse_adjacency = False
    assert torch.equal(fast, model(x, edge_index))


def test_sparse_graphs_keep_the_edge_path(path_graph):
    """Batches under the mean-degree threshold (molecules) are not converted."""
    model = MODELS.get("gin")().build(4, 2)
    seen = []
    model.encoder.convs[0].register_forward_pre_hook(lambda _, args: seen.append(args[1]))
    model(path_graph.x, path_graph.edge_index)
    assert seen[-1] is path_graph.edge_index


def test_random_node_subgraph_is_induced_on_the_kept_share(path_graph):
    from gnnbackdoor.models.train_graph import random_node_subgraph

    sub = random_node_subgraph(path_graph, 0.5, torch.Generator().manual_seed(0))
    assert sub.num_nodes == 3 and torch.equal(sub.y, path_graph.y)
    # each kept row is one of the path's rows, in the original order
    rows = [int(torch.nonzero((path_graph.x == r).all(1))[0]) for r in sub.x]
    assert rows == sorted(rows)
    # an edge survives exactly when both ends were kept (path: consecutive ids)
    expected = sum(1 for a, b in itertools.pairwise(rows) if b == a + 1) * 2
    assert sub.edge_index.size(1) == expected
    assert random_node_subgraph(path_graph, 0.01, torch.Generator()).num_nodes == 1


def test_subgraph_augmentation_changes_training_deterministically(tiny_graph_dataset):
    def train_once(p: float) -> torch.Tensor:
        torch.manual_seed(3)
        model = MODELS.get("gcn")().build(3, 2)
        config = GraphTrainConfig(max_epochs=3, batch_size=8, subgraph_augmentation=p)
        shuffle = torch.Generator().manual_seed(3)
        train_graph_model(model, tiny_graph_dataset[:30], tiny_graph_dataset[30:], config, shuffle)
        return predict_graphs(model, tiny_graph_dataset)[1]

    assert torch.equal(train_once(0.5), train_once(0.5))
    assert not torch.equal(train_once(0.5), train_once(0.0))


@pytest.mark.parametrize("values", [{"subgraph_augmentation": 1.5}, {"subgraph_keep": 0.0}])
def test_subgraph_augmentation_validation(values):
    with pytest.raises(ConfigError):
        GraphTrainConfig(**values)


# --- issue 14: victims as their papers build them -----------------------------------------


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_graph_models_use_batch_norm_and_legacy_values_remove_it(name):
    from torch_geometric.nn.norm import BatchNorm

    model = MODELS.get(name)().build(3, 2)
    assert sum(isinstance(m, BatchNorm) for m in model.modules()) >= 2
    legacy = MODELS.get(name)(**MODELS.get(name).legacy_values).build(3, 2)
    assert not any(isinstance(m, BatchNorm) for m in legacy.modules())
    assert not hasattr(legacy.encoder, "jk") and not hasattr(legacy.encoder, "lin")


def test_gin_follows_xu_et_al():
    """Batch norm inside each layer's MLP and after it; readout over every layer (JK cat);
    sum pooling."""
    from torch_geometric.nn.aggr import SumAggregation
    from torch_geometric.nn.norm import BatchNorm

    model = MODELS.get("gin")(num_layers=4).build(3, 2)
    for conv in model.encoder.convs:
        assert isinstance(conv.nn.norms[0], BatchNorm)
    assert all(isinstance(norm, BatchNorm) for norm in model.encoder.norms)
    assert model.encoder.jk.mode == "cat" and model.encoder.lin.in_features == 4 * 64
    assert isinstance(model.pool, SumAggregation)
    assert [type(m) for m in model.head] == [torch.nn.Dropout, torch.nn.Linear]
    legacy = MODELS.get("gin")(**MODELS.get("gin").legacy_values).build(3, 2)
    assert len(legacy.head) == 4 and len(legacy.encoder.convs) == 3
    assert len(MODELS.get("gin")().build(3, 2).encoder.convs) == 4  # Xu et al.: 4 + input


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_eval_mode_answers_one_graph_and_one_node(name, tiny_graph_dataset):
    """Batch norm uses its running statistics in eval mode: a batch of one graph gives the
    same logits as that graph inside a larger batch; a one-node graph trains too."""
    torch.manual_seed(0)
    model = MODELS.get(name)().build(3, 2)
    batch = Batch.from_data_list(tiny_graph_dataset[:6])
    model(batch.x, batch.edge_index, batch.batch).sum().backward()  # move running stats
    model.eval()
    with torch.no_grad():
        together = model(batch.x, batch.edge_index, batch.batch)
        alone = model(tiny_graph_dataset[2].x, tiny_graph_dataset[2].edge_index)
    assert torch.allclose(together[2:3], alone, atol=1e-5)
    model.train()
    single = torch.empty(2, 0, dtype=torch.long)
    assert model(torch.rand(1, 3), single).shape == (1, 2)  # training batch of one node


def test_gin_with_batch_norm_keeps_the_exact_rule():
    """The linear-first shortcut is off when the MLP normalises (it would not be exact)."""
    model = MODELS.get("gin")().build(12, 2)
    assert all(conv._projectable_first_linear(12) is None for conv in model.encoder.convs)
    legacy = MODELS.get("gin")(norm="none", jk="none", hidden_channels=4).build(12, 2)
    assert legacy.encoder.convs[0]._projectable_first_linear(12) is not None


def test_edge_weight_gradient_reaches_a_batch_norm_gin_in_eval_mode(path_graph):
    """GCleaner and GTA differentiate through edge weights of a frozen (eval-mode) victim."""
    torch.manual_seed(0)
    model = MODELS.get("gin")().build(4, 2).eval()
    weight = torch.ones(path_graph.edge_index.size(1), requires_grad=True)
    model(path_graph.x, path_graph.edge_index, None, weight).sum().backward()
    assert weight.grad is not None and bool(weight.grad.abs().sum() > 0)


def test_load_model_fills_legacy_values_of_an_old_config(tmp_path):
    import json

    spec = MODELS.get("gin")(norm="none", jk="none")
    torch.manual_seed(0)
    model = spec.build(3, 2)
    save_model(model, spec, tmp_path / "m", 3, 2)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["spec"]["norm"], config["spec"]["jk"]  # saved before the fields existed
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    loaded, _ = load_model(tmp_path / "m")
    assert torch.equal(
        loaded.encoder.convs[0].nn.lins[0].weight, model.encoder.convs[0].nn.lins[0].weight
    )


@pytest.mark.parametrize("values", [{"norm": "layer_norm"}, {"jk": "lstm"}, {"head_layers": 3}])
def test_norm_and_jk_validation(values):
    with pytest.raises(ConfigError):
        MODELS.get("gin")(**values)


def test_learning_rate_decay_and_selection(tiny_graph_dataset):
    def train_once(**values) -> torch.Tensor:
        torch.manual_seed(3)
        model = MODELS.get("gin")().build(3, 2)
        config = GraphTrainConfig(max_epochs=4, batch_size=8, **values)
        train_graph_model(
            model,
            tiny_graph_dataset[:30],
            tiny_graph_dataset[30:],
            config,
            torch.Generator().manual_seed(3),
        )
        return predict_graphs(model, tiny_graph_dataset)[1]

    decayed = train_once(lr_decay_every=1, lr_decay_factor=0.1, selection="val_acc")
    assert torch.equal(
        decayed, train_once(lr_decay_every=1, lr_decay_factor=0.1, selection="val_acc")
    )
    assert not torch.equal(decayed, train_once(lr_decay_factor=1.0, selection="val_acc"))


@pytest.mark.parametrize(
    "values",
    [
        {"selection": "val_f1"},
        {"selection_window": 0},
        {"lr_decay_factor": 0.0},
        {"lr_decay_every": 0},
    ],
)
def test_train_selection_and_decay_validation(values):
    with pytest.raises(ConfigError):
        GraphTrainConfig(**values)


def test_cross_validation_folds_partition_the_graphs(tiny_graph_dataset):
    folds = [
        split_graphs(tiny_graph_dataset, seed=1, val_fraction=0.1, cv_folds=5, cv_fold=k)
        for k in range(5)
    ]
    tests = [set(f.test_index) for f in folds]
    assert sorted(i for t in tests for i in t) == list(range(len(tiny_graph_dataset)))
    for fold, test in zip(folds, tests, strict=True):
        assert len(test) == 8 and not test & set(fold.train_index + fold.val_index)
        assert len(fold.train_index) + len(fold.val_index) == 32
        assert sorted(graph_labels(fold.test).tolist()) == [0] * 4 + [1] * 4  # stratified
    with pytest.raises(ConfigError):
        split_graphs(tiny_graph_dataset, seed=1, cv_folds=5, cv_fold=5)


@pytest.mark.parametrize("values", [{"cv_folds": 1}, {"cv_folds": 5, "cv_fold": 5}, {"cv_fold": 2}])
def test_data_config_cv_validation(values):
    from gnnbackdoor.experiments.config import DataConfig

    with pytest.raises(ConfigError):
        DataConfig(**values)


def test_selection_window_keeps_an_epoch_of_a_good_stretch(tiny_graph_dataset, monkeypatch):
    """With a window of 3 the kept epoch maximises the trailing mean of validation accuracy,
    not the single best epoch; a window of 1 is the per-epoch rule."""
    import gnnbackdoor.models.train_graph as train_graph

    curve = iter([0.5, 0.9, 0.5, 0.7, 0.8, 0.8, 0.6, 0.5])
    monkeypatch.setattr(train_graph, "_val_scores", lambda *args: (next(curve), 1.0))

    def kept(window: int) -> int:
        nonlocal curve
        curve = iter([0.5, 0.9, 0.5, 0.7, 0.8, 0.8, 0.6, 0.5])
        model = MODELS.get("gcn")().build(3, 2)
        config = GraphTrainConfig(max_epochs=8, patience=8, selection_window=window)
        report = train_graph_model(
            model,
            tiny_graph_dataset[:8],
            tiny_graph_dataset[8:10],
            config,
            torch.Generator().manual_seed(0),
        )
        return report.best_epoch

    assert kept(1) == 2
    assert kept(3) == 6  # (0.7 + 0.8 + 0.8) / 3 beats (0.5 + 0.9 + 0.5) / 3
