"""The graph pipeline's GCleaner controls and collapse flags (issues 14 and 20): Table IV's
cosine, the oracle and no-trigger unlearnings measured like the defended model, and the
majority-share / collapse / already-target figures of the backdoored and defended models."""

from __future__ import annotations

import copy
import math

import torch

import gnnbackdoor.defenses.gcleaner as gcleaner_module
from gnnbackdoor.defenses.gcleaner import GCleaner
from gnnbackdoor.defenses.trigger_recovery import RecoveryConfig
from gnnbackdoor.defenses.unlearning import UnlearningConfig
from gnnbackdoor.experiments import pipelines
from gnnbackdoor.experiments.pipelines import GraphPipeline, _collapse_metrics
from gnnbackdoor.utils.timing import PhaseTimer

CONTROLS = ("gc_oracle_asr", "gc_oracle_acc", "gc_notrigger_asr", "gc_notrigger_acc")
FLAGS = ("majority_share", "collapsed")


def _gcleaner(**unlearning) -> GCleaner:
    settings = {"epochs": 3, "teacher_epochs": 2, "batch_size": 4, **unlearning}
    return GCleaner(
        holding_rate=0.25,
        explainer="random",
        recovery=RecoveryConfig(epochs=2, batch_size=4),
        unlearning=UnlearningConfig(**settings),
    )


def _share(value: float) -> bool:
    return 0.0 <= value <= 1.0


def test_a_gcleaner_run_records_the_controls_the_cosine_and_the_flags(
    tiny_graph_dataset, graph_run
):
    out = GraphPipeline().execute(graph_run(tiny_graph_dataset, _gcleaner()), PhaseTimer())
    metrics = out.metrics
    assert metrics["gc_teacher_refused"] == 0.0
    for name in CONTROLS:
        assert _share(metrics[name]), name
    assert -1.0 <= metrics["gc_trigger_cosine"] <= 1.0
    assert metrics["gc_trigger_cosine_graphs"] >= 1
    assert metrics["gc_oracle_graphs"] >= 1
    for model in ("backdoored", "defended"):
        assert _share(metrics[f"{model}_majority_share"])
        assert metrics[f"{model}_majority_share"] >= 0.5  # two classes
        assert metrics[f"{model}_collapsed"] in (0.0, 1.0)
    assert _share(metrics["backdoored_already_target"])
    assert out.attack_info["gc_teacher_check"].startswith("teacher accepted")


def test_the_controls_are_what_unlearn_control_gives(tiny_graph_dataset, graph_run, monkeypatch):
    """The recorded no-trigger figures are those of GCleaner's own control on the graphs
    its repair unlearned on: the pipeline scores, it does not re-implement."""
    made = {}
    original = GCleaner.unlearn_control

    def spy(self, model, clean_graphs, triggered_graphs, ctx):
        result = original(self, model, clean_graphs, triggered_graphs, ctx)
        made["oracle" if triggered_graphs is not None else "notrigger"] = (
            copy.deepcopy(result),
            len(clean_graphs),
        )
        return result

    monkeypatch.setattr(GCleaner, "unlearn_control", spy)
    out = GraphPipeline().execute(graph_run(tiny_graph_dataset, _gcleaner()), PhaseTimer())
    assert set(made) == {"oracle", "notrigger"}
    assert made["oracle"][1] == out.metrics["gc_oracle_graphs"]
    assert made["notrigger"][1] == out.metrics["gc_num_trigger_graphs"]


def test_the_controls_leave_every_other_figure_alone(tiny_graph_dataset, graph_run, monkeypatch):
    """Measurement only: with the controls left out, every other figure is the same."""
    with_controls = (
        GraphPipeline().execute(graph_run(tiny_graph_dataset, _gcleaner()), PhaseTimer()).metrics
    )
    monkeypatch.setattr(pipelines, "_repair_controls", lambda *args: None)
    without = GraphPipeline().execute(graph_run(tiny_graph_dataset, _gcleaner()), PhaseTimer())
    assert "gc_oracle_asr" not in without.metrics
    for name, value in without.metrics.items():
        other = with_controls[name]
        assert value == other or (math.isnan(value) and math.isnan(other)), name


class Flipped(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, edge_index, batch=None):
        return self.model(x, edge_index, batch).flip(-1)


def flipped_teacher(model, clean, config, generator=None):
    # every held-out graph the backdoored model gets right, this teacher gets wrong
    return Flipped(copy.deepcopy(model)).eval(), [0.0]


def test_a_refused_teacher_with_a_stand_in_still_gets_its_controls(
    tiny_graph_dataset, graph_run, monkeypatch
):
    monkeypatch.setattr(gcleaner_module, "fine_tune_teacher", flipped_teacher)
    metrics = GraphPipeline().execute(graph_run(tiny_graph_dataset, _gcleaner()), PhaseTimer())
    metrics = metrics.metrics
    assert metrics["gc_teacher_refused"] == 1.0 and metrics["gc_teacher_fallback_used"] == 1.0
    assert not math.isnan(metrics["gc_notrigger_asr"])
    assert not math.isnan(metrics["gc_notrigger_acc"])


def test_a_refused_teacher_gives_null_controls(tiny_graph_dataset, graph_run, monkeypatch):
    monkeypatch.setattr(gcleaner_module, "fine_tune_teacher", flipped_teacher)
    metrics = (
        GraphPipeline()
        .execute(graph_run(tiny_graph_dataset, _gcleaner(teacher_fallback="none")), PhaseTimer())
        .metrics
    )
    assert metrics["gc_backdoored_holdout_acc"] > 0.0  # so the flipped teacher is worse
    assert metrics["gc_teacher_refused"] == 1.0
    for name in CONTROLS:
        assert math.isnan(metrics[name]), name
    assert not math.isnan(metrics["gc_trigger_cosine"])  # recovery still ran
    assert metrics["defended_acc"] == metrics["backdoored_acc"]  # model unchanged
    assert metrics["defended_asr"] == metrics["asr"]


def test_an_attacked_run_records_the_collapse_flags(tiny_graph_dataset, graph_run):
    metrics = GraphPipeline().execute(graph_run(tiny_graph_dataset), PhaseTimer()).metrics
    for flag in FLAGS:
        assert f"backdoored_{flag}" in metrics
        assert f"defended_{flag}" not in metrics  # no defense
    assert metrics["backdoored_collapsed"] in (0.0, 1.0)
    assert _share(metrics["backdoored_already_target"])
    assert "gc_trigger_cosine" not in metrics


def test_every_graph_run_flags_its_clean_victim_too(tiny_graph_dataset, graph_run, monkeypatch):
    seen: list[torch.Tensor] = []
    real = pipelines._collapse_metrics

    def spy(prefix, predicted, labels, ctx):
        if prefix == "clean":
            seen.append(predicted.clone())
        return real(prefix, predicted, labels, ctx)

    monkeypatch.setattr(pipelines, "_collapse_metrics", spy)
    metrics = GraphPipeline().execute(graph_run(tiny_graph_dataset), PhaseTimer()).metrics
    assert len(seen) == 1  # the clean victim's predictions on the evaluation graphs
    shares = seen[0].bincount().double() / seen[0].numel()
    assert metrics["clean_majority_share"] == float(shares.max())
    assert metrics["clean_collapsed"] in (0.0, 1.0)


def test_collapse_flag_is_the_majority_share_against_the_labels():
    ctx = type("Ctx", (), {"num_classes": 2})()
    labels = torch.tensor([0, 1] * 10)  # balanced: majority share 0.5
    constant = torch.zeros(20, dtype=torch.long)
    assert _collapse_metrics("m", constant, labels, ctx) == {
        "m_majority_share": 1.0,
        "m_collapsed": 1.0,
    }
    following = labels.clone()
    following[:2] = 0  # 0.55: within ten points of the labels' 0.5
    assert _collapse_metrics("m", following, labels, ctx)["m_collapsed"] == 0.0
    empty = _collapse_metrics("m", torch.tensor([], dtype=torch.long), labels[:0], ctx)
    assert all(math.isnan(v) for v in empty.values())
