"""The GraphProt page's honest summaries on tiny synthetic records: which rows are averaged,
the means over them, the paper's rows under the same definitions, and the best sample rate
of a clean victim behind the shield."""

from __future__ import annotations

import math

import pytest

from gnnbackdoor.experiments.pages.common import nested
from gnnbackdoor.experiments.pages.graphprot_summary import (
    Entry,
    accuracy_rows,
    attack_rows,
    best_rate,
    collapsed,
    entries,
    implanted,
    paper_rows,
    record_der,
    registered_readout,
    summarize,
    victim_label,
)


def rec(seed=0, defense="graphprot-r", norm="batch_norm", target=0, attack="sba", **metrics):
    base = {
        "asr": 0.9,
        "clean_model_asr": 0.1,
        "clean_acc": 0.8,
        "backdoored_acc": 0.78,
        "defended_asr": 0.3,
        "defended_acc": 0.7,
    }
    return {
        "task": "graph",
        "dataset": "AIDS",
        "model": "gcn",
        "attack": attack,
        "defense": defense,
        "seed": seed,
        "metrics": {**base, **metrics},
        "config": nested({"attack.target_class": target, "model.norm": norm}),
    }


def test_implanted_reads_the_field_else_applies_the_same_test():
    assert implanted(rec(backdoor_implanted=1.0, asr=0.1))  # the field wins
    assert not implanted(rec(backdoor_implanted=0.0))
    assert implanted(rec())  # 90 % and 80 points above the clean model's 10 %
    assert not implanted(rec(asr=0.45))  # below 50 %
    assert not implanted(rec(asr=0.9, clean_model_asr=0.75))  # 15 points: fools clean too
    assert not implanted(rec(asr=float("nan")))


def test_collapsed_and_der_fall_back_for_old_records():
    assert not collapsed(rec()) and collapsed(rec(backdoored_collapsed=1.0))
    assert record_der(rec(der=0.6)) == 0.6
    # (max(0, 0.9 - 0.3) - max(0, 0.78 - 0.7) + 1) / 2
    assert record_der(rec()) == pytest.approx(0.76)


def test_rows_averaged_only_when_every_seed_implanted_without_collapse():
    good = [rec(s, d) for s in range(3) for d in ("graphprot-r", "graphprot-t")]
    partly = [rec(s, attack="gta", asr=0.9 if s else 0.2) for s in range(3)]
    fallen = [rec(s, attack="motif-ba", backdoored_collapsed=float(s == 1)) for s in range(3)]
    few = [rec(s, attack="exp-ba") for s in range(2)]
    rows = {r.attack: r for r in attack_rows(good + partly + fallen + few)}
    assert rows["sba"].status() is None
    assert rows["gta"].status() == "implanted in 2 of 3 seeds"
    assert rows["motif-ba"].status() == "backdoored model collapsed in 1 of 3 seeds"
    assert rows["exp-ba"].status() == "2 seeds (fewer than 3)"
    got = entries(rows.values())
    assert [e.variant for e in got] == ["GraphProt-R", "GraphProt-T"]  # no TF runs
    assert got[0].backdoored_asr == pytest.approx(90) and got[0].shielded_asr == pytest.approx(30)


def test_new_victims_replace_old_ones_row_by_row():
    old = [rec(s, norm="none") for s in range(3)] + [
        rec(s, norm="none", attack="gta") for s in range(3)
    ]
    new = [rec(s, asr=0.95) for s in range(3)]
    rows = {(r.attack, r.protocol_victim): r for r in attack_rows(old + new)}
    assert set(rows) == {("sba", True), ("gta", False)}
    assert all(r["metrics"]["asr"] == 0.95 for r in rows[("sba", True)].seeds)
    # another target is another row
    assert len(attack_rows([*old, rec(0, norm="none", target=1)])) == 3


def test_summarize_means_relative_absolute_drops_and_der():
    items = [
        Entry("GraphProt-R", 80.0, 20.0, 90.0, 88.0, 85.0, 60.0),
        Entry("GraphProt-R", 100.0, 50.0, 70.0, 70.0, 60.0, 40.0, pre_protocol=True),
        Entry("GraphProt-R", 100.0, float("nan"), 70.0, 70.0, 60.0),  # incomplete: skipped
    ]
    s = summarize(items)
    assert s.rows == 2 and s.pre_protocol == 1
    assert s.relative == pytest.approx((75.0 + 50.0) / 2)
    assert s.absolute == pytest.approx((60.0 + 50.0) / 2)
    assert s.drop_clean == pytest.approx((5.0 + 10.0) / 2)
    assert s.drop_backdoored == pytest.approx((3.0 + 10.0) / 2)
    assert s.der == pytest.approx(50.0)
    assert math.isnan(summarize([]).relative)


def test_paper_rows_use_the_same_implant_test_and_der():
    table = [
        {"model": "GCN", "defense": "Backdoored Model", "dataset": "A", "asr": "99", "acc": "90"},
        {"model": "GCN", "defense": "Clean Model", "dataset": "A", "asr": "10", "acc": "92"},
        {"model": "GCN", "defense": "GraphProt-R", "dataset": "A", "asr": "19", "acc": "88"},
        {"model": "GCN", "defense": "Backdoored Model", "dataset": "B", "asr": "60", "acc": "70"},
        {"model": "GCN", "defense": "Clean Model", "dataset": "B", "asr": "45", "acc": "71"},
        {"model": "GCN", "defense": "RS", "dataset": "B", "asr": "30", "acc": "70"},
    ]
    rows = {r.dataset: r for r in paper_rows(table, "model")}
    assert rows["A"].implanted and not rows["B"].implanted  # B: 15 points above clean
    first = rows["A"].entries()[0]
    assert first.variant == "GraphProt-R" and first.clean_acc == 92.0
    assert first.der == pytest.approx((0.80 - 0.02 + 1) / 2 * 100)
    assert math.isnan(rows["A"].entries()[1].shielded_asr)  # no GraphProt-T row


def test_best_rate_smallest_within_tolerance_else_highest():
    assert best_rate(80.0, {0.1: 60.0, 0.2: 78.5, 0.3: 79.0, 1.0: 80.0}) == (0.2, True)
    assert best_rate(80.0, {0.1: 60.0, 0.5: 70.0, 0.9: 70.0}) == (0.5, False)
    assert best_rate(80.0, {}) == (None, False)
    assert best_rate(float("nan"), {0.1: 60.0, 0.4: 61.0}) == (0.4, False)


def test_accuracy_rows_group_clean_shielded_runs_by_rate():
    def clean_run(seed, rate, acc, norm="batch_norm"):
        r = rec(seed, attack=None, norm=norm, clean_acc=0.8 + seed / 100, defended_acc=acc)
        r["config"]["defense"] = {"sample_rate": rate}
        return r

    runs = [clean_run(s, p, 0.5 + p / 2) for s in range(3) for p in (0.2, 1.0)]
    runs += [clean_run(0, 0.2, 0.1, norm="none"), rec(0)]  # old victim; attacked run
    (row,) = accuracy_rows(runs)
    assert row.protocol_victim and sorted(row.by_rate) == [0.2, 1.0]
    mean, _std, n = row.clean()
    assert (round(mean, 6), n) == (81.0, 3)
    assert row.shielded(0.2)[0] == pytest.approx(60.0) and row.shielded(0.5)[2] == 0


def test_victim_label_names_a_readout_other_than_the_registered_one():
    assert (registered_readout("gin"), registered_readout("gcn")) == ("sum", "mean")
    assert registered_readout("gae") is None and registered_readout("no-such-model") is None
    gin = {"model": "gin", "config": nested({"model.pool": "sum"})}
    assert victim_label(gin) == "gin"
    assert victim_label({**gin, "config": nested({"model.pool": "mean"})}) == "gin (mean readout)"
    assert victim_label({"model": "gcn", "config": nested({"model.pool": "max"})}) == (
        "gcn (max readout)"
    )
    assert victim_label({"model": "gin", "config": {}}) == "gin"  # no pool recorded
    runs = []
    for pool in ("sum", "mean"):
        r = rec(0, attack=None, defended_acc=0.5)
        r["model"] = "gin"
        r["config"]["model"]["pool"] = pool
        runs.append(r)
    assert sorted(row.model for row in accuracy_rows(runs)) == ["gin", "gin (mean readout)"]
