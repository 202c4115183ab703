"""Link-Backdoor's baselines (ERB, GTA for links, R-Backdoor, P-Backdoor) on tiny graphs: the
budgets m and Q (and Q_X), injected nodes only, inputs never modified, the same draws for the
same seed, and one-line errors for bad settings."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.attacks.link_baselines import ERB, GTALink, PBackdoor, RBackdoor
from gnnbackdoor.attacks.link_triggers import TriggerPattern, candidate_pairs
from gnnbackdoor.cli import main
from gnnbackdoor.experiments.pipelines import LinkPipeline
from gnnbackdoor.utils.seeding import RunStreams, Stage

from .test_link_backdoor import tiny_context

FAST = {
    "erb": {},
    "r-backdoor": {},
    "p-backdoor": {"particles": 6, "iterations": 3},
    "gta-link": {"generator_steps": 3, "update_every": 3},
}


def make(name: str, **extra):
    return ATTACKS.get(name)(p=0.2, num_test_targets=6, **{**FAST[name], **extra})


def copies(pattern: TriggerPattern, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-copy structure ``[T, P]`` and features ``[T, m, D]`` of a shared or per-copy pattern."""
    structure, features = pattern.structure, pattern.features
    if structure.dim() == 1:
        structure = structure.unsqueeze(0).expand(num, -1)
        features = features.unsqueeze(0).expand(num, -1, -1)
    return structure, features


def check_budgets(attack, pattern: TriggerPattern, num: int) -> None:
    structure, features = copies(pattern, num)
    links = structure.sum(dim=1)
    assert bool(((links >= 1) & (links <= attack.Q)).all())
    pairs = candidate_pairs(attack.m)
    touches_u = structure[:, pairs[0] == 0].any(dim=1)
    touches_v = structure[:, pairs[0] == 1].any(dim=1)
    if attack.Q >= 2:
        assert bool((touches_u & touches_v).all()), "anchored at both end nodes"
    assert bool(((features == 0) | (features == 1)).all())
    changed = (features != pattern.initial_features).sum(dim=-1)
    assert bool((changed <= attack.feature_budget).all())


@pytest.mark.parametrize("name", sorted(FAST))
def test_budgets_injected_nodes_only_and_inputs_untouched(name):
    ctx = tiny_context()
    train_before = copy.deepcopy(ctx.split.train)
    attack = make(name, Q=3, feature_budget=2).fit(ctx)
    num = attack.poison_targets_.size(1)
    check_budgets(attack, attack.trigger_, num)
    backdoored = attack.backdoor(ctx)
    check_budgets(attack, attack.trigger_, num)
    targets = attack.test_targets(ctx)
    triggered = attack.activate(ctx.split.train, targets)
    n, e = train_before.num_nodes, train_before.edge_index.size(1)
    for graph in (ctx.split.train,):
        assert torch.equal(graph.x, train_before.x)
        assert torch.equal(graph.edge_index, train_before.edge_index)
    for graph, count in ((attack.poisoned_graph(ctx.split.train), num), (triggered, 6)):
        assert graph.num_nodes == n + attack.m * count
        assert torch.equal(graph.x[:n], train_before.x)
        assert torch.equal(graph.edge_index[:, :e], train_before.edge_index)
        added = graph.edge_index[:, e:]
        assert bool((added.max(dim=0).values >= n).all()), "every trigger link touches a new node"
        assert added.size(1) <= 2 * attack.Q * count
    assert backdoored.encode(triggered.x, triggered.edge_index).size(0) == triggered.num_nodes


@pytest.mark.parametrize("name", sorted(FAST))
def test_same_seed_same_trigger_and_metrics(name):
    results = []
    for _ in range(2):
        ctx = tiny_context(seed=3)
        with RunStreams(3).running(Stage.ATTACK):  # as the pipeline runs the attack stage
            attack = make(name).fit(ctx)
            backdoored = attack.backdoor(ctx)
        targets = attack.test_targets(ctx)
        triggered = attack.activate(ctx.split.train, targets)
        metrics = LinkPipeline._attack_metrics(ctx, ctx.clean_model, backdoored, targets, triggered)
        results.append((attack.trigger_, attack.poison_targets_, metrics))
    (a, ta, ma), (b, tb, mb) = results
    assert torch.equal(ta, tb)
    assert torch.equal(a.structure, b.structure) and torch.equal(a.features, b.features)
    assert ma == pytest.approx(mb, nan_ok=True)


def test_erb_follows_its_edge_probability():
    ctx = tiny_context()
    none = make("erb", edge_probability=0.0, Q=5).fit(ctx)
    assert none.trigger_.num_links == 2  # only the anchors at u and v
    ctx = tiny_context()
    full = make("erb", edge_probability=1.0, Q=5).fit(ctx)
    assert full.trigger_.num_links == candidate_pairs(2).size(1)
    assert full.describe()["trigger_updates"] == 0  # nothing optimised


def test_r_backdoor_draws_exactly_num_links():
    for k in (1, 3, 5):
        ctx = tiny_context()
        attack = make("r-backdoor", num_links=k, Q=5).fit(ctx)
        assert attack.trigger_.num_links == k
        donors = attack.trigger_.features
        assert any(torch.equal(donors[0], row) for row in ctx.split.train.x.clamp(0, 1))


def test_p_backdoor_decodes_within_budgets_and_never_worsens():
    ctx = tiny_context()
    attack = make("p-backdoor", rounds=0, Q=2, feature_budget=1).fit(ctx)
    rng = np.random.default_rng(0)
    dims = candidate_pairs(2).size(1) + 2 * ctx.num_features
    for _ in range(20):
        check_budgets(attack, attack.decode(rng.uniform(0, 1, dims)), 1)
    again = attack.decode(attack.encode(attack.trigger_))
    assert torch.equal(again.structure, attack.trigger_.structure)
    assert torch.equal(again.features, attack.trigger_.features)
    before = attack.fitness(ctx.clean_model, ctx.split.train, attack.trigger_)
    attack._update(ctx.clean_model, ctx.split.train)
    after = attack.fitness(ctx.clean_model, ctx.split.train, attack.trigger_)
    assert after <= before


def test_p_backdoor_leaves_global_state_alone(tmp_path, monkeypatch):
    import logging

    monkeypatch.chdir(tmp_path)
    ctx = tiny_context()
    np.random.seed(11)
    state = np.random.get_state()[1].copy()
    handlers = list(logging.getLogger().handlers)
    make("p-backdoor").fit(ctx)
    assert np.array_equal(np.random.get_state()[1], state)
    assert logging.getLogger().handlers == handlers
    assert not (tmp_path / "report.log").exists()


def test_gta_link_generates_per_target_triggers_and_learns():
    ctx = tiny_context()
    attack = make("gta-link", init_updates=0, Q=5).fit(ctx)
    structure = attack.trigger_.structure
    assert structure.dim() == 2 and structure.size(0) == attack.poison_targets_.size(1)
    before = attack._losses[:]
    attack = make("gta-link", init_updates=3, generator_steps=10).fit(tiny_context())
    assert not before and len(attack._losses) == 3
    targets = attack.test_targets(tiny_context())
    pattern = attack._activation_pattern(tiny_context().split.train, targets)
    assert pattern.structure.size(0) == targets.size(1)
    assert len(attack._versions) == 4  # activation does not add a version


def test_registered_with_sources():
    for name, cls in [("erb", ERB), ("gta-link", GTALink), ("r-backdoor", RBackdoor),
                      ("p-backdoor", PBackdoor)]:  # fmt: skip
        assert ATTACKS.get(name) is cls
        assert "Link-Backdoor" in cls.reference


@pytest.mark.parametrize(
    "attack, setting, fragment",
    [
        ("erb", "attack.edge_probability=1.5", "edge_probability"),
        ("r-backdoor", "attack.num_links=0", "num_links"),
        ("p-backdoor", "attack.particles=1", "particles"),
        ("gta-link", "attack.generator_steps=0", "generator_steps"),
        ("erb", "attack.blackbox_target=sideways", "blackbox_target"),
        ("erb", "attack.m=0", "attack.m=0: expected an integer >= 1"),
        ("r-backdoor", "attack.surrogate=deepwalk", "not a link model"),
    ],
)
def test_bad_settings_give_one_line(attack, setting, fragment, tmp_path, capsys):
    status = main(
        [
            "run", "--task", "link", "--dataset", "SBM", "--model", "gae",
            "--attack", attack, "--set", setting, "--out", str(tmp_path), "--quiet",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and fragment in err


@pytest.mark.parametrize("trigger", ["backdoored-surrogate", "clean-surrogate"])
def test_black_box_trigger_readings(trigger):
    ctx = tiny_context()
    attack = ATTACKS.get("link-backdoor")(
        p=0.2, num_test_targets=6, surrogate="vgae", init_updates=1, update_every=2,
        blackbox_trigger=trigger,
    ).fit(ctx)  # fmt: skip
    info = attack.describe()
    if trigger == "backdoored-surrogate":  # Algorithm 1 ran on the surrogate, with updates
        assert info["surrogate_best_epoch"] is not None
        assert info["trigger_updates_in_training"] > 0
    else:
        assert info["surrogate_best_epoch"] is None
        assert info["trigger_updates"] == 1
    before = attack.trigger_
    attack.backdoor(ctx)
    assert attack.trigger_ is before  # the target's training never changes the trigger
