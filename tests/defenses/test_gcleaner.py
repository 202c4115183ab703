"""GCleaner on tiny graphs: the straight-through trigger adjacency, the Montage that replaces
exactly the n least important nodes, the frozen teacher, the defender's data, the no-backdoor
run and one-line parameter errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnnbackdoor.cli import main
from gnnbackdoor.defenses import DEFENSES
from gnnbackdoor.defenses.gcleaner import GCleaner
from gnnbackdoor.defenses.trigger_recovery import (
    RecoveryConfig,
    TriggerSlots,
    embed_trigger,
    infer_feature_mode,
    least_important,
    mean_pairwise_cosine,
    node_importance,
    recover_trigger,
    recovery_generator,
    straight_through_adjacency,
    triggered_graphs,
)
from gnnbackdoor.defenses.unlearning import (
    LayerRecorder,
    UnlearningConfig,
    _normalise,
    attention_maps,
    fine_tune_teacher,
    unlearn,
)
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.models import MODELS


def _model(in_channels: int, classes: int = 2, name: str = "gin"):
    torch.manual_seed(0)
    return MODELS.get(name)(hidden_channels=16, num_layers=2).build(in_channels, classes)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_registered():
    assert DEFENSES.get("gcleaner") is GCleaner


def test_adjacency_is_binary_symmetric_zero_diagonal_and_passes_gradients():
    logits = torch.randn(3, 4, 4, requires_grad=True)
    adjacency = straight_through_adjacency(logits)
    assert torch.equal(adjacency, adjacency.transpose(-1, -2))
    assert torch.all(adjacency.diagonal(dim1=-2, dim2=-1) == 0)
    assert set(adjacency.detach().unique().tolist()) <= {0.0, 1.0}
    (adjacency * torch.randn(3, 4, 4)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_generator_adjacency_gradient_reaches_its_weights(path_graph):
    x = path_graph.x
    gen = recovery_generator(3, 4, 8, x.min(0).values, x.max(0).values, feature_mode="range")
    feats, adjacency = gen(x[:3].unsqueeze(0))
    assert feats.shape == (1, 3, 4) and adjacency.shape == (1, 3, 3)
    assert torch.all(feats >= x.min(0).values - 1e-6) and torch.all(feats <= x.max(0).values + 1e-6)
    adjacency.sum().backward()
    assert gen.structure_head.weight.grad.abs().sum() > 0


def test_least_important_is_ascending_and_stable():
    scores = torch.tensor([0.5, 0.1, 0.9, 0.1, 0.3])
    assert least_important(scores, 3).tolist() == [1, 3, 4]


def test_trigger_replaces_exactly_the_n_least_important_nodes(path_graph):
    scores = torch.tensor([0.9, 0.2, 0.8, 0.1, 0.7, 0.05])  # least important: 5, 3, 1
    n = 3
    positions = least_important(scores, n)
    assert sorted(positions.tolist()) == [1, 3, 5]
    slots = TriggerSlots.build([path_graph], [positions])
    feats = torch.full((1, n, 4), 7.0)
    adjacency = torch.ones(1, n, n) - torch.eye(n)
    x, edge_index, weight = embed_trigger(slots, feats, adjacency, weighted=True)
    assert x.size(0) == path_graph.num_nodes  # replaced, not added
    changed = (x != path_graph.x).any(-1).nonzero().view(-1).tolist()
    assert changed == [1, 3, 5]
    (graph,) = triggered_graphs(slots, feats, adjacency)
    edges = {tuple(e) for e in graph.edge_index.t().tolist()}
    for a in (1, 3, 5):
        for b in (1, 3, 5):
            assert ((a, b) in edges) == (a != b)  # the trigger's clique among the slots
    original = {tuple(e) for e in path_graph.edge_index.t().tolist()}
    untouched = {e for e in original if not (e[0] in (1, 3, 5) and e[1] in (1, 3, 5))}
    assert untouched <= edges  # edges to the rest of the graph stay
    assert weight is not None and weight.numel() == edge_index.size(1)
    assert not path_graph.x.eq(7.0).any()  # the caller's graph is not modified


def test_unweighted_montage_keeps_only_present_trigger_edges(path_graph):
    slots = TriggerSlots.build([path_graph], [torch.tensor([0, 2, 4])])
    adjacency = torch.zeros(1, 3, 3)
    adjacency[0, 0, 1] = adjacency[0, 1, 0] = 1
    _, edge_index, weight = embed_trigger(
        slots, path_graph.x[[0, 2, 4]].unsqueeze(0), adjacency, False
    )
    assert weight is None
    assert {(0, 2), (2, 0)} <= {tuple(e) for e in edge_index.t().tolist()}
    assert (0, 4) not in {tuple(e) for e in edge_index.t().tolist()}


def test_mean_pairwise_cosine():
    same = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    assert float(mean_pairwise_cosine(same)) == pytest.approx(1.0)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert float(mean_pairwise_cosine(opposite)) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "method", ["gnnexplainer", "pgexplainer", "integrated_gradients", "guided_backprop", "random"]
)
def test_node_importance_one_score_per_node(tiny_graph_dataset, method):
    model = _model(3)
    graphs = tiny_graph_dataset[:4]
    scores = node_importance(
        model, graphs, method, epochs=3, generator=torch.Generator().manual_seed(0)
    )
    assert [s.numel() for s in scores] == [g.num_nodes for g in graphs]
    assert all(torch.isfinite(s).all() for s in scores)


def test_recovery_runs_and_leaves_the_model_unchanged(tiny_graph_dataset):
    model = _model(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graphs = tiny_graph_dataset[:8]
    positions = [least_important(torch.rand(g.num_nodes), 3) for g in graphs]
    config = RecoveryConfig(epochs=2, batch_size=4, trigger_features="range")
    result = recover_trigger(model, graphs, positions, 3, config)
    assert len(result.triggered) == 8
    assert all(t.num_nodes == g.num_nodes for t, g in zip(result.triggered, graphs, strict=True))
    assert -1 <= result.similarity <= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_auto_features_are_one_hot_rows_on_one_hot_data(tiny_graph_dataset, path_graph):
    assert infer_feature_mode(tiny_graph_dataset[0].x) == "onehot"
    assert infer_feature_mode(path_graph.x) == "range"
    model = _model(3)
    graphs = tiny_graph_dataset[:8]
    positions = [least_important(torch.rand(g.num_nodes), 3) for g in graphs]
    result = recover_trigger(model, graphs, positions, 3, RecoveryConfig(epochs=2, batch_size=4))
    for graph, position in zip(result.triggered, positions, strict=True):
        rows = graph.x[position]
        assert set(rows.unique().tolist()) <= {0.0, 1.0}
        assert torch.all(rows.sum(-1) == 1)


def test_range_features_are_not_one_hot(tiny_graph_dataset):
    """The check above can fail: ``range`` writes values strictly inside (0, 1)."""
    model = _model(3)
    graphs = tiny_graph_dataset[:8]
    positions = [least_important(torch.rand(g.num_nodes), 3) for g in graphs]
    config = RecoveryConfig(epochs=1, batch_size=4, trigger_features="range")
    result = recover_trigger(model, graphs, positions, 3, config)
    rows = result.triggered[0].x[positions[0]]
    assert not set(rows.unique().tolist()) <= {0.0, 1.0}


def test_teacher_does_not_depend_on_the_recovery_settings(tiny_graph_dataset, monkeypatch):
    """Ablations of the recovery (explainer, epochs) must share one teacher."""
    from types import SimpleNamespace

    import gnnbackdoor.defenses.gcleaner as module

    teachers = []

    def spy(model, clean, config, generator):
        teacher, losses = fine_tune_teacher(model, clean, config, generator)
        teachers.append({k: v.clone() for k, v in teacher.state_dict().items()})
        return teacher, losses

    monkeypatch.setattr(module, "fine_tune_teacher", spy)
    graphs = tiny_graph_dataset[:12]
    for explainer, epochs in (("random", 1), ("integrated_gradients", 3)):
        torch.manual_seed(5)
        ctx = SimpleNamespace(
            generator=torch.Generator().manual_seed(5), num_classes=2, timings={}, clean_model=None
        )
        defense = GCleaner(
            explainer=explainer,
            recovery=RecoveryConfig(epochs=epochs, batch_size=4),
            unlearning=UnlearningConfig(teacher_epochs=2, epochs=1, batch_size=4),
        )
        defense.repair(_model(3), graphs, ctx)
    first, second = teachers
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_teacher_is_frozen_and_unchanged_by_unlearning(tiny_graph_dataset):
    student = _model(3)
    graphs = tiny_graph_dataset[:8]
    config = UnlearningConfig(epochs=2, teacher_epochs=2, batch_size=4, lr=0.01, heatmap_weight=1)
    teacher, _ = fine_tune_teacher(student, graphs, config, _gen())
    assert teacher is not student
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    triggered = [Data(x=g.x.flip(0), edge_index=g.edge_index, y=g.y) for g in graphs]
    unlearn(student, teacher, graphs, triggered, config, _gen())
    assert all(torch.equal(frozen[k], v) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items())


def test_an_all_zero_heat_map_keeps_finite_gradients():
    heat = torch.tensor([0.0, 0.0, 3.0, 4.0], requires_grad=True)
    batch = torch.tensor([0, 0, 1, 1])
    normalised = _normalise(heat, batch, 2)
    assert torch.allclose(normalised, torch.tensor([0.0, 0.0, 0.6, 0.8]))
    (normalised * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.isfinite(heat.grad).all()


@pytest.mark.parametrize("method", ["integrated_gradients", "guided_backprop"])
def test_input_level_heat_maps_keep_a_feature_blind_model_finite(tiny_graph_dataset, method):
    """A model whose output ignores the node features has all-zero input gradients: the
    heat-map term must not turn its weights into NaN (it did, through sqrt at 0)."""
    student = _model(3)
    graphs = [Data(x=torch.zeros_like(g.x), edge_index=g.edge_index, y=g.y)
              for g in tiny_graph_dataset[:8]]  # fmt: skip
    config = UnlearningConfig(
        epochs=2, teacher_epochs=1, batch_size=4, heatmap=method, lr=0.01, heatmap_weight=1
    )
    teacher, _ = fine_tune_teacher(student, graphs, config, _gen())
    report = unlearn(student, teacher, graphs, graphs, config, _gen())
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert all(torch.isfinite(torch.tensor(report.losses)))


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients", "guided_backprop"])
def test_heat_maps_are_per_node_and_differentiable(tiny_graph_dataset, method):
    model = _model(3)
    batch = Batch.from_data_list(tiny_graph_dataset[:3])
    recorder = LayerRecorder(model)
    try:
        _, maps = attention_maps(model, recorder, batch, batch.y.view(-1), method, True)
    finally:
        recorder.remove()
    assert len(maps) == (2 if method == "gradcam" else 1)
    assert all(m.shape == (batch.num_nodes,) for m in maps)
    sum(m.sum() for m in maps).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_defender_set_is_disjoint_from_evaluation(tiny_graph_dataset):
    defense = GCleaner(holding_rate=0.1)
    test = tiny_graph_dataset
    defender, evaluation = defense.split_defender_data(
        test, torch.Generator().manual_seed(0), dataset_size=200
    )
    assert len(defender) == 20  # 10 % of the whole dataset (the paper's holding rate)
    assert not set(defender) & set(evaluation)
    assert sorted(defender + evaluation) == list(range(len(test)))
    by_test = GCleaner(holding_rate=0.1, holding_basis="test")
    defender, _ = by_test.split_defender_data(test, torch.Generator().manual_seed(0), 200)
    assert len(defender) == 4


def test_auxiliary_width_mismatch_is_a_config_error(tiny_graph_dataset):
    defense = GCleaner(auxiliary_dataset="Motifs")  # 8 features, the tiny graphs have 3
    with pytest.raises(ConfigError, match="node features"):
        defense.split_defender_data(tiny_graph_dataset, torch.Generator().manual_seed(0), 40)


def test_auxiliary_dataset_feeds_the_defender(tiny_graph_dataset):
    widened = [
        Data(x=torch.nn.functional.pad(g.x, (0, 5)), edge_index=g.edge_index, y=g.y)
        for g in tiny_graph_dataset
    ]
    defense = GCleaner(auxiliary_dataset="Motifs", holding_rate=0.25)
    defender, evaluation = defense.split_defender_data(
        widened, torch.Generator().manual_seed(0), 40
    )
    assert defender == [] and evaluation == list(range(40))
    assert len(defense.auxiliary_graphs_) == 10


class _ConstantModel(torch.nn.Module):
    """Predicts class 1 for every graph."""

    def forward(self, x, edge_index, batch):
        size = int(batch.max()) + 1 if batch.numel() else 0
        return torch.tensor([[0.0, 1.0]]).repeat(size, 1) + 0 * x.sum()


def test_auxiliary_graphs_take_the_models_labels_not_their_own(tiny_graph_dataset):
    defense = GCleaner(auxiliary_dataset="Motifs")
    graphs = [g.clone() for g in tiny_graph_dataset[:6]]
    for g in graphs:
        g.y = torch.tensor([0])  # the auxiliary task's own labels
    labelled = defense.pseudo_labelled(_ConstantModel(), graphs)
    assert [int(g.y) for g in labelled] == [1] * 6
    assert [int(g.y) for g in graphs] == [0] * 6  # the inputs are untouched
    assert defense.auxiliary_label_counts_ == [0, 6]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("defense.holding_rate=0", "holding_rate"),
        ("defense.holding_rate=1.5", "holding_rate"),
        ("defense.num_trigger_nodes=0", "num_trigger_nodes"),
        ("defense.num_trigger_nodes=500", "larger than every graph"),
        ("defense.explainer=lime", "explainer"),
        ("defense.unlearning.heatmap=cam", "defense.unlearning.heatmap=cam: expected one of"),
        ("defense.recovery.lr=0", r"defense.recovery.lr=0: expected a finite number > 0"),
        ("defense.recovery.lrr=1", "valid keys under defense.recovery: batch_size"),
        ("defense.recovery_lr=0.1", "recovery.<key>"),
        ("defense.auxiliary_dataset=nope", "unknown dataset 'nope'; valid choices:"),
    ],
)
def test_bad_parameters_are_one_line_errors(tmp_path, capsys, setting, message):
    status = main(
        [
            "run",
            "--task",
            "graph",
            "--dataset",
            "Motifs",
            "--model",
            "gin",
            "--defense",
            "gcleaner",
            "--set",
            setting,
            "--out",
            str(tmp_path),
            "--threads",
            "1",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.realdata
def test_auxiliary_mismatch_through_the_cli(tmp_path, capsys, mirror, shared_cache):
    status = main(
        [
            "run",
            "--task",
            "graph",
            "--dataset",
            "Motifs",
            "--model",
            "gin",
            "--defense",
            "gcleaner",
            "--set",
            "defense.auxiliary_dataset=AIDS",
            "--out",
            str(tmp_path),
            "--data-mirror",
            str(mirror),
            "--cache",
            str(shared_cache),
            "--threads",
            "1",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "node features" in err


@pytest.mark.slow
def test_no_backdoor_loses_little_accuracy(tmp_path):
    """Defense without an attack on the embedded Motifs dataset."""
    status = main(
        [
            "run",
            "--task",
            "graph",
            "--dataset",
            "Motifs",
            "--model",
            "gin",
            "--defense",
            "gcleaner",
            "--set",
            "train.max_epochs=40",
            "train.patience=10",
            "defense.holding_rate=0.1",
            "defense.explainer_epochs=30",
            "--out",
            str(tmp_path),
            "--threads",
            "1",
            "--quiet",
        ]
    )
    assert status == 0
    record = json.loads((tmp_path / "records.jsonl").read_text().splitlines()[0])
    metrics = record["metrics"]
    assert metrics["num_defender_graphs"] == 30
    assert metrics["num_eval_graphs"] == 60 - 30
    assert metrics["defended_acc"] >= metrics["clean_acc"] - 0.05
    assert record["timings"]["gcleaner_recovery_s"] > 0


def test_teacher_learning_rate_is_its_own(tiny_graph_dataset):
    """``teacher_lr`` drives the teacher's fine-tuning alone: at 0 the teacher keeps the
    backdoored weights (weight decay included) while ``lr`` stays the unlearning's."""
    student = _model(3)
    graphs = tiny_graph_dataset[:8]
    config = UnlearningConfig(lr=0.5, teacher_epochs=2, batch_size=4, teacher_lr=0.0)
    teacher, _ = fine_tune_teacher(student, graphs, config, _gen())
    # the weights stay; batch norm's running statistics (buffers) move in any training pass
    assert all(
        torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters(), strict=True)
    )
    moved, _ = fine_tune_teacher(
        student, graphs, UnlearningConfig(lr=0.5, teacher_epochs=2), _gen()
    )
    assert any(
        not torch.equal(a, b)
        for a, b in zip(moved.state_dict().values(), student.state_dict().values(), strict=True)
    )
