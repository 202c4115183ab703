"""GCleaner made attributable (issue 20): the teacher's held-out check and refusal, the
oracle and no-trigger unlearning controls, random tie-breaking of the trigger's placement,
and the in-distribution recovery priors (ours)."""

from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import pytest
import torch
from torch_geometric.data import Batch, Data

import gnnbackdoor.defenses.gcleaner as gcleaner_module
from gnnbackdoor.defenses.gcleaner import GCleaner
from gnnbackdoor.defenses.trigger_recovery import (
    FeaturePrior,
    LogitShiftPrior,
    RecoveryConfig,
    least_important,
    node_importance,
    recover_trigger,
)
from gnnbackdoor.defenses.unlearning import UnlearningConfig, fine_tune_teacher
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import predict_graphs


def _model(in_channels: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return MODELS.get("gin")(hidden_channels=16, num_layers=2).build(in_channels, 2)


def _ctx(seed: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        generator=torch.Generator().manual_seed(seed), num_classes=2, timings={}, clean_model=None
    )


def _quick(**unlearning) -> GCleaner:
    settings = {"epochs": 2, "teacher_epochs": 2, "batch_size": 4, **unlearning}
    return GCleaner(
        explainer="random",
        recovery=RecoveryConfig(epochs=1, batch_size=4),
        unlearning=UnlearningConfig(**settings),
    )


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


class _Flipped(torch.nn.Module):
    """A 'teacher' that predicts the other class than ``model`` on every graph."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, edge_index, batch=None):
        return self.model(x, edge_index, batch).flip(-1)


def _self_labelled(model, graphs):
    """Copies labelled with ``model``'s own predictions (the model is then 100 % right)."""
    predicted = predict_graphs(model, graphs)[0]
    out = []
    for graph, label in zip(graphs, predicted.tolist(), strict=True):
        copy_ = graph.clone()
        copy_.y = torch.tensor([label])
        out.append(copy_)
    return out


# --------------------------------------------------------------------------- the teacher


def _with_a_flipped_teacher(tiny_graph_dataset, monkeypatch):
    """A model, 20 graphs it labels itself, its weights, and a teacher fine-tuning patched
    to answer the opposite class (so the check refuses it)."""
    model = _model()
    graphs = _self_labelled(model, tiny_graph_dataset[:20])
    monkeypatch.setattr(
        gcleaner_module,
        "fine_tune_teacher",
        lambda m, clean, config, generator=None: (_Flipped(copy.deepcopy(m)).eval(), [0.0]),
    )
    return model, graphs, _state(model)


def test_a_damaged_teacher_is_refused_and_the_model_returned_unchanged(
    tiny_graph_dataset, monkeypatch, caplog
):
    model, graphs, before = _with_a_flipped_teacher(tiny_graph_dataset, monkeypatch)
    defense = _quick(teacher_fallback="none")
    with caplog.at_level(logging.WARNING, logger="gnnbackdoor.defenses.gcleaner"):
        result = defense.repair(model, graphs, _ctx())
    assert result.model is model and _same(before, _state(model))
    assert result.info["gc_teacher_fallback_used"] == 0.0
    info = result.info
    assert info["gc_teacher_refused"] == 1.0
    assert info["gc_teacher_holdout_acc"] == 0.0 and info["gc_backdoored_holdout_acc"] == 1.0
    assert info["gc_teacher_holdout_graphs"] == 4.0  # 20 % of 20 defender graphs
    message = result.notes["gc_teacher_check"]
    assert message.startswith("teacher refused") and "\n" not in message
    assert any("teacher refused" in r.getMessage() for r in caplog.records)
    # the controls share the refused teacher: they change nothing either
    control = defense.unlearn_control(copy.deepcopy(model), graphs, None, _ctx())
    assert _same(before, _state(control))


def test_a_refused_teacher_is_replaced_by_the_backdoored_model(
    tiny_graph_dataset, monkeypatch, caplog
):
    """The default fallback: the flipped teacher is refused and never teaches; a frozen
    copy of the backdoored model does, so unlearning runs (and the controls with it)."""
    model, graphs, before = _with_a_flipped_teacher(tiny_graph_dataset, monkeypatch)
    defense = _quick()
    with caplog.at_level(logging.WARNING, logger="gnnbackdoor.defenses.gcleaner"):
        result = defense.repair(model, graphs, _ctx())
    info = result.info
    assert info["gc_teacher_refused"] == 1.0 and info["gc_teacher_fallback_used"] == 1.0
    assert any("teaches instead" in r.getMessage() for r in caplog.records)
    teacher = defense.teacher_.model
    assert not isinstance(teacher, _Flipped)
    assert _same(before, _state(teacher))  # the backdoored weights, frozen
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not _same(before, _state(model))  # unlearning ran
    control = defense.unlearn_control(_model(), graphs, None, _ctx())  # same weights
    assert not _same(before, _state(control))


def test_a_teacher_as_good_as_the_model_is_used(tiny_graph_dataset):
    # without batch norm: a training pass at learning rate 0 still moves batch norm's running
    # statistics, so only a victim without it keeps exactly the backdoored model's answers
    torch.manual_seed(0)
    model = MODELS.get("gin")(hidden_channels=16, num_layers=2, norm="none").build(3, 2)
    graphs = _self_labelled(model, tiny_graph_dataset[:20])
    before = _state(model)
    defense = _quick(teacher_lr=0.0)  # the teacher keeps the backdoored weights: a tie
    result = defense.repair(model, graphs, _ctx())
    info = result.info
    assert info["gc_teacher_refused"] == 0.0
    assert info["gc_teacher_holdout_acc"] == info["gc_backdoored_holdout_acc"] == 1.0
    assert result.notes["gc_teacher_check"].startswith("teacher accepted")
    assert not _same(before, _state(model))  # unlearning ran


def test_the_teacher_never_sees_its_held_out_graphs(tiny_graph_dataset, monkeypatch):
    seen: list[int] = []

    def spy(model, clean, config, generator=None):
        seen.extend(id(g) for g in clean)
        return fine_tune_teacher(model, clean, config, generator)

    monkeypatch.setattr(gcleaner_module, "fine_tune_teacher", spy)
    graphs = tiny_graph_dataset[:20]
    _quick().repair(_model(), graphs, _ctx())
    assert len(seen) == 16 and len(set(seen)) == 16


def test_one_defender_graph_cannot_check_a_teacher(tiny_graph_dataset):
    defense = GCleaner(holding_rate=0.03, holding_basis="test")  # 1 of 40 graphs
    with pytest.raises(ConfigError, match="at least 2"):
        defense.split_defender_data(tiny_graph_dataset, torch.Generator().manual_seed(0))
    # without the check (teacher_holdout 0, the pre-issue-20 teacher) one graph is enough
    legacy = GCleaner(
        holding_rate=0.03, holding_basis="test", unlearning=UnlearningConfig(teacher_holdout=0)
    )
    defender, _ = legacy.split_defender_data(tiny_graph_dataset, torch.Generator().manual_seed(0))
    assert len(defender) == 1


def test_teacher_and_unlearning_rates_default_to_0_01():
    config = UnlearningConfig()
    assert config.lr == 0.01 and config.teacher_lr == 0.01
    with pytest.raises(ConfigError, match="teacher_holdout"):
        UnlearningConfig(teacher_holdout=1.0)


# --------------------------------------------------------------------------- controls


def _triangle_trigger(graph: Data) -> Data:
    """Nodes 0-2 become a triangle of all-ones feature rows (node count unchanged)."""
    x = graph.x.clone()
    x[:3] = 1.0
    keep = ~((graph.edge_index[0] < 3) & (graph.edge_index[1] < 3))
    tri = torch.tensor([[0, 1, 0, 2, 1, 2], [1, 0, 2, 0, 2, 1]])
    edge_index = torch.cat([graph.edge_index[:, keep], tri], dim=1)
    return Data(x=x, edge_index=edge_index, y=graph.y.clone())


def _backdoored(graphs: list[Data]):
    """A GIN trained on the clean graphs plus triggered cycles relabelled as class 1."""
    torch.manual_seed(0)
    model = _model(seed=0)
    poisoned = [
        Data(x=t.x, edge_index=t.edge_index, y=torch.tensor([1]))
        for t in (_triangle_trigger(g) for g in graphs if int(g.y) == 0)
    ]
    batch = Batch.from_data_list(list(graphs) + poisoned)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(150):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(batch.x, batch.edge_index, batch.batch), batch.y
        )
        loss.backward()
        optimiser.step()
    return model.eval()


def _asr(model, graphs: list[Data]) -> float:
    cycles = [_triangle_trigger(g) for g in graphs if int(g.y) == 0]
    return float((predict_graphs(model, cycles)[0] == 1).float().mean())


def test_oracle_control_removes_the_backdoor_the_no_trigger_control_does_not(
    tiny_graph_dataset,
):
    graphs = tiny_graph_dataset
    backdoored = _backdoored(graphs[:24])
    evaluation = graphs[24:]
    assert _asr(backdoored, evaluation) > 0.8  # the backdoor is in
    defender = graphs[:16]
    defense = GCleaner(
        unlearning=UnlearningConfig(epochs=40, teacher_epochs=2, batch_size=8, teacher_lr=0.0)
    )
    ctx = _ctx()
    oracle = defense.unlearn_control(
        copy.deepcopy(backdoored), defender, [_triangle_trigger(g) for g in defender], ctx
    )
    none = defense.unlearn_control(copy.deepcopy(backdoored), defender, None, ctx)
    assert _asr(oracle, evaluation) < 0.2
    assert _asr(none, evaluation) > 0.8
    # the same teacher and shuffling: the oracle again from the same weights is identical
    again = defense.unlearn_control(
        copy.deepcopy(backdoored), defender, [_triangle_trigger(g) for g in defender], ctx
    )
    assert _same(_state(oracle), _state(again))


def test_controls_share_the_teacher_made_by_repair(tiny_graph_dataset, monkeypatch):
    calls = []

    def spy(model, clean, config, generator=None):
        calls.append(len(clean))
        return fine_tune_teacher(model, clean, config, generator)

    monkeypatch.setattr(gcleaner_module, "fine_tune_teacher", spy)
    graphs = tiny_graph_dataset[:20]
    model = _model()
    defense = _quick()
    ctx = _ctx()
    result = defense.repair(copy.deepcopy(model), graphs, ctx)
    assert result.recovered is not None
    unlearned = [graphs[i] for i in result.recovered.sources()]
    defense.unlearn_control(copy.deepcopy(model), unlearned, None, ctx)
    assert calls == [16]  # one teacher, made by repair
    other = _model(seed=1)  # other weights: a teacher of their own
    defense.unlearn_control(other, graphs, None, ctx)
    assert calls == [16, 16]


def test_controls_need_aligned_graphs(tiny_graph_dataset):
    graphs = tiny_graph_dataset[:8]
    defense = _quick()
    with pytest.raises(ValueError, match="aligned"):
        defense.unlearn_control(_model(), graphs, graphs[:7], _ctx())
    with pytest.raises(ValueError, match="aligned"):
        defense.unlearn_control(_model(), graphs[:2], [graphs[1], graphs[0]], _ctx())


# --------------------------------------------------------------------------- placement


def test_ties_are_broken_at_random_from_the_handed_generator():
    scores = torch.zeros(20)
    scores[7] = -1.0  # the one strictly least important node always comes first
    picks = {
        tuple(least_important(scores, 3, torch.Generator().manual_seed(s)).tolist())
        for s in range(6)
    }
    assert all(p[0] == 7 for p in picks)
    assert len(picks) > 1  # different streams break the ties differently
    first = least_important(scores, 3, torch.Generator().manual_seed(3))
    second = least_important(scores, 3, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)  # the same stream, the same placement
    assert least_important(scores, 3).tolist() == [7, 0, 1]  # no stream: node index
    distinct = torch.tensor([0.5, 0.1, 0.9, 0.2])
    assert least_important(distinct, 2, torch.Generator().manual_seed(0)).tolist() == [1, 3]


def test_the_explainer_draws_from_the_handed_generator_not_the_global_state(
    tiny_graph_dataset,
):
    model = _model()
    graphs = tiny_graph_dataset[:4]
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        runs.append(
            node_importance(model, graphs, "gnnexplainer", 5, torch.Generator().manual_seed(9))
        )
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


# --------------------------------------------------------------------------- priors (ours)


def test_feature_prior_charges_rare_labels_not_common_ones():
    x = torch.zeros(100, 4)
    x[:90, 0] = 1
    x[90:, 1] = 1  # label 2 and 3 never seen
    prior = FeaturePrior(x, "onehot")
    common = torch.nn.functional.one_hot(torch.tensor([[0, 0]]), 4).float()
    rare = torch.nn.functional.one_hot(torch.tensor([[1, 1]]), 4).float()
    unseen = torch.nn.functional.one_hot(torch.tensor([[3, 3]]), 4).float()
    assert float(prior(common)) == 0.0
    assert 0 < float(prior(rare)) < float(prior(unseen))
    continuous = FeaturePrior(
        torch.randn(200, 2, generator=torch.Generator().manual_seed(0)), "range"
    )
    assert float(continuous(torch.zeros(1, 1, 2))) == 0.0
    assert float(continuous(torch.full((1, 1, 2), 10.0))) > 0


def test_logit_shift_prior_charges_only_shifts_beyond_the_clean_spread():
    clean = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    prior = LogitShiftPrior(clean)
    assert float(prior(clean + 0.1, clean)) == 0.0
    assert float(prior(clean + 100.0, clean)) > 10


@pytest.mark.parametrize("prior", ["none", "feature", "logit_shift"])
def test_recovery_runs_with_each_prior(tiny_graph_dataset, prior):
    model = _model()
    graphs = tiny_graph_dataset[:8]
    positions = [least_important(torch.rand(g.num_nodes), 3) for g in graphs]
    config = RecoveryConfig(epochs=2, batch_size=4, prior=prior)
    result = recover_trigger(model, graphs, positions, 3, config)
    assert len(result.triggered) == 8 and -1 <= result.similarity <= 1


def test_an_unknown_prior_is_a_config_error():
    with pytest.raises(ConfigError, match="prior=gaussian: expected one of none, feature"):
        RecoveryConfig(prior="gaussian")


def test_teacher_holdout_zero_is_the_unchecked_teacher_of_old_records(
    tiny_graph_dataset, monkeypatch
):
    """``teacher_holdout=0`` (what migrated pre-issue-20 records carry): the teacher fits
    every defender graph, nothing is held out and nothing is refused."""
    seen: list[int] = []

    def spy(model, clean, config, generator=None):
        seen.append(len(clean))
        return fine_tune_teacher(model, clean, config, generator)

    monkeypatch.setattr(gcleaner_module, "fine_tune_teacher", spy)
    model = _model()
    graphs = _self_labelled(model, tiny_graph_dataset[:20])
    result = _quick(teacher_holdout=0.0).repair(model, graphs, _ctx())
    assert seen == [20]
    assert result.info["gc_teacher_refused"] == 0.0 and result.info["gc_teacher_checked"] == 0.0
    assert result.notes["gc_teacher_check"].startswith("teacher not checked")
