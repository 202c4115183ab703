"""Training defenses (ABL; the detectors ED and XGBD) and the pipeline's handling of the kind:
what they train on, how their detection is scored, and what every defense owes (registered
with a source, inputs untouched, deterministic for a seed, one-line errors for bad
settings)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from gnnbackdoor.contracts.context import GraphContext
from gnnbackdoor.contracts.results import TrainingDefenseResult
from gnnbackdoor.datasets.splits import split_graphs
from gnnbackdoor.defenses import DEFENSES, TrainingDefense
from gnnbackdoor.defenses.abl import ABL, lga_loss, lowest
from gnnbackdoor.defenses.explanation_detectors import (
    ED,
    XGBD,
    XGBD_FEATURES,
    explanation_features,
    robust_outliers,
)
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.experiments import stage_cache
from gnnbackdoor.experiments.pipelines import GraphPipeline
from gnnbackdoor.metrics import detection_scores
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig, predict_graphs
from gnnbackdoor.utils.timing import PhaseTimer

TRAINING = ["abl", "ed", "xgbd"]
#: Small settings so that the tests run in a second or two.
FAST = {
    "abl": {"isolation_epochs": 2, "tuning_epochs": 2, "unlearning_epochs": 2},
    "ed": {"explainer_epochs": 5},
    "xgbd": {"explainer_epochs": 5, "helper_epochs": 2, "seed_fraction": 0.3},
}


@dataclass
class FlagEvery(TrainingDefense):
    """A test double: records what it is handed, flags every training graph and returns the
    victim it was given (or a fresh untrained model)."""

    def train(self, graphs_train, graphs_val, ctx, victim=None):
        self.seen = (list(graphs_train), list(graphs_val), victim)
        model = victim if victim is not None else ctx.build_model()
        return TrainingDefenseResult(model, {"double": 1.0}, kept=[])


@pytest.fixture
def setting(tiny_graph_dataset):
    split = split_graphs(tiny_graph_dataset, 0, train_fraction=0.6, val_fraction=0.2)
    torch.manual_seed(0)
    ctx = GraphContext(
        split,
        MODELS.get("gcn")(hidden_channels=8, num_layers=2),
        GraphTrainConfig(max_epochs=3, batch_size=8),
        0,
        torch.Generator().manual_seed(0),
    )
    return ctx, split


def _graph_tensors(graphs):
    return [(g.x.clone(), g.edge_index.clone(), g.y.clone()) for g in graphs]


def _same(a, b):
    return all(
        torch.equal(x, y) for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True)
    )


# --------------------------------------------------------------------------- every one


@pytest.mark.parametrize("name", TRAINING)
def test_registered_as_training_defenses_with_a_source(name):
    cls = DEFENSES.get(name)
    assert issubclass(cls, TrainingDefense) and cls.reference


@pytest.mark.parametrize("name", TRAINING)
def test_inputs_untouched_and_deterministic_for_a_seed(name, setting):
    ctx, split = setting
    train, val = list(split.train), list(split.val)
    before = _graph_tensors(train) + _graph_tensors(val)
    outs = []
    for _ in range(2):
        ctx.generator = torch.Generator().manual_seed(7)
        torch.manual_seed(3)
        result = DEFENSES.get(name)(**FAST[name]).train(train, val, ctx)
        outs.append((predict_graphs(result.model, split.test)[1], result.kept, result.flagged))
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][1:] == outs[1][1:]
    assert _same(before, _graph_tensors(train) + _graph_tensors(val))


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("abl", {"isolation_ratio": 0.0}),
        ("abl", {"isolation_ratio": 1.0}),
        ("abl", {"gamma": 0.0}),
        ("abl", {"isolation_epochs": 0}),
        ("abl", {"unlearning_lr": -1.0}),
        ("abl", {"tuning_epochs": -1}),
        ("ed", {"z_threshold": 0.0}),
        ("ed", {"explainer_epochs": 2}),
        ("ed", {"explanation_fraction": 0.0}),
        ("xgbd", {"explain_batch": 0}),
        ("xgbd", {"threshold": 1.0}),
        ("xgbd", {"classifier": "xgboost"}),
        ("xgbd", {"seed_fraction": 0.6}),
        ("xgbd", {"helper_epochs": 0}),
        ("ed", {"screen_validation": "maybe"}),
    ],
)
def test_bad_settings_fail_in_one_line(name, values):
    with pytest.raises(ConfigError) as error:
        DEFENSES.get(name)(**values)
    assert "\n" not in str(error.value) and next(iter(values)) in str(error.value)


# --------------------------------------------------------------------------- the pipeline


def test_the_pipeline_hands_the_victims_poisoned_training_set(tiny_graph_dataset, graph_run):
    double = FlagEvery()
    out = GraphPipeline().execute(graph_run(tiny_graph_dataset, double), PhaseTimer())
    train, val, victim = double.seen
    m = out.metrics
    poisoned = out.attack_info["num_poisoned"]
    assert poisoned >= 1 and m["num_train_graphs"] == len(train)
    # the poisoned graphs carry the target class (1) in the set handed over
    assert sum(int(g.y) == 1 for g in train) >= poisoned
    assert victim is not None and len(val) >= 1
    # kept=[]: every graph flagged, so recall 1 and precision the poisoned share
    assert m["num_flagged"] == len(train) and m["num_kept_graphs"] == 0
    assert m["detector_recall"] == 1.0
    assert m["detector_precision"] == pytest.approx(poisoned / len(train))
    # the victim handed over is scored: the same figures as the backdoored model
    assert m["defended_acc"] == m["backdoored_acc"] and m["defended_asr"] == m["asr"]
    assert m["der"] == pytest.approx(0.5) and m["double"] == 1.0
    assert "num_defender_graphs" not in m and m["num_eval_graphs"] == 16


def test_without_an_attack_it_trains_on_the_clean_split(tiny_graph_dataset, graph_run):
    double = FlagEvery()
    run = graph_run(tiny_graph_dataset, double, attack=False)
    out = GraphPipeline().execute(run, PhaseTimer())
    assert double.seen[2] is not None  # the clean victim
    assert math.isnan(out.metrics["detector_recall"]) and out.metrics["detector_precision"] == 0


def test_a_defense_setting_moves_no_draw_of_the_victims_or_the_attack(
    tiny_graph_dataset, graph_run
):
    runs = [
        GraphPipeline().execute(
            graph_run(tiny_graph_dataset, ABL(**{**FAST["abl"], "gamma": gamma})), PhaseTimer()
        )
        for gamma in (0.5, 0.1)
    ]
    for key in ("clean_acc", "backdoored_acc", "asr", "clean_model_asr"):
        assert runs[0].metrics[key] == runs[1].metrics[key], key


# --------------------------------------------------------------------------- metrics


def test_detection_scores():
    scores = detection_scores([0, 1, 2, 3], [1, 3, 5], 8)
    assert scores == {"detector_precision": 0.5, "detector_recall": 2 / 3, "num_flagged": 4.0}
    none = detection_scores([], [1], 3)
    assert math.isnan(none["detector_precision"]) and none["detector_recall"] == 0.0
    with pytest.raises(ValueError, match="outside"):
        detection_scores([3], [], 3)


def test_results_refuse_unordered_positions():
    with pytest.raises(ValueError, match="increasing"):
        TrainingDefenseResult(torch.nn.Linear(1, 1), kept=[2, 1])
    result = TrainingDefenseResult(torch.nn.Linear(1, 1), kept=[0, 2])
    assert result.flagged_positions(4) == [1, 3]
    assert TrainingDefenseResult(torch.nn.Linear(1, 1)).flagged_positions(4) is None


# --------------------------------------------------------------------------- ABL


def test_lga_ascends_below_gamma_and_descends_above():
    logits = torch.tensor([[2.0, 0.0]], requires_grad=True)
    low = lga_loss(gamma=5.0)(logits, torch.tensor([0]))  # CE < gamma: ascent
    low.backward()
    assert low < 0 and logits.grad[0, 0] > 0  # raising the loss lowers the right logit's lead
    logits.grad = None
    high = lga_loss(gamma=0.01)(logits, torch.tensor([0]))
    high.backward()
    assert high > 0 and logits.grad[0, 0] < 0


def test_lowest_breaks_ties_by_position():
    assert lowest(torch.tensor([0.3, 0.1, 0.1, 0.0]), 2) == [1, 3]
    assert lowest(torch.tensor([0.3, 0.1, 0.1, 0.0]), 3) == [1, 2, 3]


def test_abl_isolates_its_share_and_unlearns_it(setting):
    ctx, split = setting
    train = list(split.train)
    result = ABL(isolation_ratio=0.2, isolation_epochs=3, tuning_epochs=3).train(
        train, list(split.val), ctx
    )
    count = round(0.2 * len(train))
    assert result.kept is None and len(result.flagged) == count
    info = result.info
    assert info["abl_isolated"] == count and info["abl_isolated_loss"] <= info["abl_rest_loss"]
    # gradient ascent raises the isolated graphs' loss
    assert info["abl_unlearn_loss_last"] > info["abl_isolated_loss"]


def test_abl_isolates_at_least_one_graph(setting):
    ctx, split = setting
    result = ABL(isolation_ratio=0.001, **FAST["abl"]).train(list(split.train), [], ctx)
    assert len(result.flagged) == 1


def test_a_stage_cache_hit_hands_over_the_same_training_set(
    tiny_graph_dataset, graph_run, tmp_path, monkeypatch
):
    defense = ABL(**FAST["abl"])
    plain = GraphPipeline().execute(graph_run(tiny_graph_dataset, defense), PhaseTimer())
    monkeypatch.setenv("GNNBACKDOOR_STAGE_CACHE", str(tmp_path))
    outs = [
        GraphPipeline().execute(graph_run(tiny_graph_dataset, ABL(**FAST["abl"])), PhaseTimer())
        for _ in range(2)
    ]
    assert outs[1].attack_info.get("stage_cached") is True
    assert plain.metrics == outs[0].metrics == outs[1].metrics
    # the entry keeps only the poisoned graphs, not the training split again
    (path,) = tmp_path.glob("stage-*.pt")
    stored = stage_cache.load(path).training
    poisoned = outs[0].attack_info["num_poisoned"]
    assert sorted(stored.changed) == stored.poisoned_index and len(stored.changed) == poisoned
    assert stored.val_changed == {} and stored.size == plain.metrics["num_train_graphs"]


# --------------------------------------------------------------------------- ED and XGBD


def test_robust_outliers_flag_the_high_side_only():
    values = np.array([0.1, 0.12, 0.11, 0.09, 0.1, 0.95, -0.8])
    assert robust_outliers(values, 3.0) == [5]
    assert robust_outliers(np.full(5, 0.4), 1.0) == []
    # a zero MAD falls back on the standard deviation
    assert robust_outliers(np.array([0.0, 0.0, 0.0, 0.0, 1.0]), 1.5) == [4]


def test_explanation_features_are_bounded_and_reproducible(setting):
    ctx, split = setting
    model = ctx.train_new_model(split.train)
    graphs = list(split.train)[:10]
    rows = [
        explanation_features(model, graphs, 0.3, 5, 4, torch.Generator().manual_seed(2))
        for _ in range(2)
    ]
    assert rows[0] == rows[1] and len(rows[0]) == len(graphs)
    for row, g in zip(rows[0], graphs, strict=True):
        assert tuple(row) == XGBD_FEATURES and row["num_nodes"] == g.num_nodes
        assert 0 <= row["p_full"] <= 1 and -1 <= row["fidelity_plus"] <= 1
        assert 0 <= row["mask_top_share"] <= 1 + 1e-6 and 0 <= row["sub_density"] <= 1
        assert 0 < row["sub_connectivity"] <= 1


@pytest.mark.parametrize("name", ["ed", "xgbd"])
def test_detectors_retrain_on_what_they_keep(name, setting, monkeypatch):
    ctx, split = setting
    train = list(split.train)
    trained_on = []
    real = GraphContext.train_new_model

    def spy(self, graphs, desc="train", val=None):
        trained_on.append((desc, list(graphs), list(val)))
        return real(self, graphs, desc, val)

    monkeypatch.setattr(GraphContext, "train_new_model", spy)
    flags, val_flags = [0, 3], [1]
    seen = []

    def flag(self, features, val_features, graphs, ctx):
        seen.append((len(features), len(val_features)))
        return flags, val_flags, {}

    monkeypatch.setattr(type(DEFENSES.get(name)()), "flag", flag)
    val = list(split.val)
    result = DEFENSES.get(name)(**FAST[name]).train(train, val, ctx)
    assert seen == [(len(train), len(val))]
    assert result.kept == [i for i in range(len(train)) if i not in flags]
    assert result.flagged_positions(len(train)) == flags
    # a helper was trained (no victim handed over), then the retrained model on the kept
    assert [d for d, _, _ in trained_on] == ["detector helper", f"{name} retrained"]
    assert trained_on[1][1] == [train[i] for i in result.kept]
    assert trained_on[1][2] == [g for j, g in enumerate(val) if j != 1]
    assert result.info[f"{name}_flagged_share"] == 2 / len(train)
    assert result.info[f"{name}_val_flagged"] == 1


def test_ed_flags_the_graphs_whose_fidelity_stands_out(setting, monkeypatch):
    ctx, split = setting
    train = list(split.train)
    fidelity = [0.1 + 0.01 * (i % 3) for i in range(len(train))]
    fidelity[4] = 0.9
    rows = [{"fidelity_plus": f} for f in fidelity]
    val_rows = [{"fidelity_plus": 0.1}, {"fidelity_plus": 0.8}]
    flagged, flagged_val, info = ED().flag(rows, val_rows, train, ctx)
    assert flagged == [4] and info["ed_fidelity_flagged_min"] == 0.9
    assert flagged_val == [1]  # judged against the training graphs' median and MAD


def test_xgbd_learns_the_pseudo_labels_from_the_explanations(setting, monkeypatch):
    ctx, split = setting
    train = list(split.train)
    n = len(train)
    # graphs 0..4 have the lowest early loss and a distinctive explanation
    loss = torch.tensor([0.0] * 5 + [1.0 + i for i in range(n - 5)])
    monkeypatch.setattr(
        "gnnbackdoor.defenses.explanation_detectors.per_graph_loss", lambda *a: loss
    )
    rows = [{f: (1.0 if i < 5 else 0.0) + 0.01 * i for f in XGBD_FEATURES} for i in range(n)]
    detector = XGBD(seed_fraction=5 / n, clean_fraction=0.5, classifier="gradient_boosting")
    val_rows = [rows[0], rows[-1]]
    flagged, flagged_val, info = detector.flag(rows, val_rows, train, ctx)
    # out-of-fold for the seeds, and the unlabelled middle alike: the explanation decides
    assert flagged == [0, 1, 2, 3, 4] and flagged_val == [0]
    assert info["xgbd_pseudo_labelled"] == 5 + round(0.5 * n)
    # the default classifier runs on the same rows (too few for its 20-graph leaves to split)
    flagged, _, _ = XGBD(seed_fraction=5 / n).flag(rows, [], train, ctx)
    assert set(flagged) <= set(range(n))
