"""Divergence in every trainer: a non-finite loss, gradient, weight or score stops training;
the best finite epoch is kept and recorded, or training fails with one line."""

from __future__ import annotations

import pytest
import torch

from gnnbackdoor.cli import main
from gnnbackdoor.datasets import split_graphs, split_links
from gnnbackdoor.defenses.unlearning import UnlearningConfig, fine_tune_teacher, unlearn
from gnnbackdoor.errors import ConfigError, TrainingDivergedError
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig, predict_graphs, train_graph_model
from gnnbackdoor.models.train_link import LinkTrainConfig, train_link_model
from gnnbackdoor.utils.seeding import RunStreams, Stage

LINK_MODELS = sorted(name for name, cls in MODELS.items() if cls.task == "link")
GRAPH_MODELS = sorted(name for name, cls in MODELS.items() if cls.task == "graph")


def _poison_weights(model: torch.nn.Module) -> None:
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))


@pytest.fixture
def graph_split(tiny_graph_dataset):
    return split_graphs(tiny_graph_dataset, seed=0, train_fraction=0.8, val_fraction=0.25)


@pytest.fixture
def link_split():
    from torch_geometric.data import Data
    from torch_geometric.utils import erdos_renyi_graph

    torch.manual_seed(0)
    graph = Data(x=torch.rand(40, 4), edge_index=erdos_renyi_graph(40, 0.2), num_nodes=40)
    with RunStreams(0).running(Stage.DATA_SPLIT):
        return split_links(graph)


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_graph_training_at_an_infinite_rate_fails_in_one_line(name, graph_split):
    torch.manual_seed(0)
    model = MODELS.get(name)().build(3, 2)
    config = GraphTrainConfig(lr=1e30, max_epochs=3, batch_size=8)
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 1") as caught:
        train_graph_model(
            model, graph_split.train, graph_split.val, config, torch.Generator().manual_seed(0)
        )
    assert "\n" not in str(caught.value) and "train.lr" in str(caught.value)


@pytest.mark.parametrize("with_val", [True, False])
def test_graph_training_keeps_the_best_finite_epoch_and_records_the_divergence(
    graph_split, with_val
):
    torch.manual_seed(0)
    model = MODELS.get("gcn")().build(3, 2)
    config = GraphTrainConfig(max_epochs=10, patience=10, batch_size=8)

    def blow_up(epoch, module):
        if epoch == 3:
            _poison_weights(module)

    val = graph_split.val if with_val else []
    report = train_graph_model(
        model, graph_split.train, val, config, torch.Generator().manual_seed(0), callback=blow_up
    )
    assert report.diverged and report.diverged_epoch == 4
    assert 1 <= report.best_epoch <= 3 and report.epochs == 3
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert bool(torch.isfinite(predict_graphs(model, graph_split.test)[1]).all())


@pytest.mark.parametrize("name", LINK_MODELS)
def test_link_training_that_is_never_finite_fails_in_one_line(name, link_split):
    torch.manual_seed(0)
    model = MODELS.get(name)().build(4)
    _poison_weights(model)  # no epoch can be finite
    config = LinkTrainConfig(max_epochs=5)
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 1"):
        train_link_model(model, link_split.train, link_split.val, config)


@pytest.mark.parametrize("name", LINK_MODELS)
def test_link_training_keeps_the_best_finite_epoch(name, link_split):
    torch.manual_seed(0)
    model = MODELS.get(name)().build(4)
    config = LinkTrainConfig(max_epochs=10, patience=10)

    def blow_up(epoch, module):
        if epoch == 3:
            _poison_weights(module)

    report = train_link_model(model, link_split.train, link_split.val, config, callback=blow_up)
    assert report.diverged_epoch == 4 and 1 <= report.best_epoch <= 3
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_a_nan_learning_rate_is_a_config_error(graph_split, link_split):
    for config_cls in (GraphTrainConfig, LinkTrainConfig):
        for value in (float("nan"), float("inf")):
            with pytest.raises(ConfigError, match=r"lr=(nan|inf): expected a finite number"):
                config_cls(lr=value)


def test_gcleaner_training_loops_fail_in_one_line_on_non_finite_weights(tiny_graph_dataset):
    torch.manual_seed(0)
    broken = MODELS.get("gcn")().build(3, 2)
    _poison_weights(broken)  # every step is skipped, the weights stay non-finite
    config = UnlearningConfig(teacher_epochs=2)
    with pytest.raises(TrainingDivergedError, match=r"lower defense\.unlearning\.teacher_lr"):
        fine_tune_teacher(broken, tiny_graph_dataset[:8], config, torch.Generator().manual_seed(0))
    model = MODELS.get("gcn")().build(3, 2)
    teacher, _ = fine_tune_teacher(
        model, tiny_graph_dataset[:8], UnlearningConfig(), torch.Generator().manual_seed(0)
    )
    _poison_weights(model)
    bad = UnlearningConfig(epochs=2)
    with pytest.raises(TrainingDivergedError, match=r"lower defense\.unlearning\.lr"):
        unlearn(
            model,
            teacher,
            tiny_graph_dataset[:8],
            tiny_graph_dataset[8:16],
            bad,
            torch.Generator().manual_seed(0),
        )


@pytest.mark.parametrize(
    ("task", "dataset", "model", "lr"),
    [
        ("graph", "Motifs", "gcn", "1e30"),
        ("graph", "Motifs", "gcn", "nan"),
        ("link", "SBM", "vgae", "inf"),
        ("link", "SBM", "arvga", "nan"),
    ],
)
def test_divergence_through_the_cli_is_one_line(tmp_path, capsys, task, dataset, model, lr):
    argv = ["run", "--task", task, "--dataset", dataset, "--model", model, "--quiet"]
    argv += ["--set", f"train.lr={lr}", "train.max_epochs=3", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.lr" in err, err
    assert not (tmp_path / "records.jsonl").exists()
