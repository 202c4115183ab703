"""Issue 17's closing note (pages/baseline_readings.py): which baseline cells are more than
FAR_POINTS from the paper, and the rule-based reading of each. Every reading is reached by
one case and every rule is shown failing into the next one; hand-made records only."""

from __future__ import annotations

import math

import pytest

from gnnbackdoor.experiments.pages.baseline_readings import (
    FAR_HEADER,
    FAR_POINTS,
    BaselineCell,
    Measure,
    Reading,
    evidence,
    far_rows,
    far_summary,
    far_table,
    incomparable,
    read_acc,
    read_asr,
)

NAN = float("nan")


# --- ASR rules (ours, paper, backdoored, paper backdoored, no-trigger rate) -----------------


def test_asr_not_comparable_comes_first_and_fails_when_comparable():
    figures = (90.0, 20.0, 95.0, 99.0, 5.0)
    assert read_asr(*figures, comparable=False) is Reading.NOT_COMPARABLE
    assert read_asr(*figures, comparable=False, defended_collapsed=True) is (Reading.NOT_COMPARABLE)
    assert read_asr(*figures) is Reading.REMOVES_LITTLE


def test_asr_defended_collapsed_needs_every_run_and_the_floor():
    # a model naming one (non-target) class: ASR 2 at a floor of 0
    assert read_asr(2.0, 40.0, 80.0, 99.0, 0.0, defended_collapsed=True) is (
        Reading.DEFENDED_COLLAPSED
    )
    # not collapsed: the next rules read it (backdoor 19 points weaker, gap 38: no)
    assert read_asr(2.0, 40.0, 80.0, 99.0, 0.0) is Reading.REMOVES_MORE
    # collapsed but the ASR is far above its floor: the trigger still acts
    assert read_asr(91.0, 27.0, 98.0, 96.0, 0.2, defended_collapsed=True) is (
        Reading.REMOVES_LITTLE
    )
    # no floor measured: the rule cannot hold
    assert read_asr(2.0, 40.0, 80.0, 99.0, NAN, defended_collapsed=True) is (Reading.REMOVES_MORE)


def test_asr_backdoor_differs_when_the_victim_accounts_for_the_gap():
    # backdoored 30 points weaker, after 20 points lower: the victim's
    assert read_asr(10.0, 30.0, 60.0, 90.0, 0.0) is Reading.BACKDOOR_DIFFERS
    # same victim gap, but after 45 points lower: more than 10 beyond it
    assert read_asr(10.0, 55.0, 60.0, 90.0, 0.0) is Reading.REMOVES_MORE
    # the victim's gap on the other side: not the victim's
    assert read_asr(10.0, 30.0, 99.0, 70.0, 0.0) is Reading.REMOVES_MORE
    # victim gap of exactly the margin: not more than it
    assert read_asr(10.0, 25.0, 80.0, 90.0, 0.0) is Reading.REMOVES_MORE
    # the paper gives no backdoored figure: the rule cannot hold
    assert read_asr(10.0, 30.0, 60.0, NAN, 0.0) is Reading.REMOVES_MORE


def test_asr_removes_little_then_floor_then_partial():
    # above the paper, within 10 of our backdoored ASR
    assert read_asr(85.0, 30.0, 95.0, 99.0, 0.0) is Reading.REMOVES_LITTLE
    # above the paper, 25 below the backdoored ASR, within 10 of the floor
    assert read_asr(70.0, 30.0, 95.0, 99.0, 62.0) is Reading.AT_FLOOR
    # neither: partial removal
    assert read_asr(70.0, 30.0, 95.0, 99.0, 50.0) is Reading.PARTIAL
    assert read_asr(70.0, 30.0, 95.0, 99.0, NAN) is Reading.PARTIAL
    # below the paper, however close to the backdoored ASR or the floor
    assert read_asr(5.0, 30.0, 10.0, 12.0, 5.0) is Reading.REMOVES_MORE


# --- accuracy rules (ours, paper, backdoored, paper backdoored) -----------------------------


def test_acc_rules_in_order():
    assert read_acc(80.0, 95.0, 98.0, 97.0, defended_collapsed=True) is (Reading.DEFENDED_COLLAPSED)
    # victim 12 points less accurate, after 19 less: the victim's
    assert read_acc(49.0, 68.0, 56.0, 68.0) is Reading.ACCURACY_DIFFERS
    # victim 12 less accurate, after 33 less: beyond it; our drop 30 vs the paper's 3
    assert read_acc(35.0, 68.0, 56.0, 68.0) is Reading.COSTS_ACCURACY
    # victim more accurate, after less accurate: not the victim's
    assert read_acc(40.0, 72.0, 85.0, 71.0) is Reading.COSTS_ACCURACY
    # our drop 12 vs the paper's 0: 12 > 10 more
    assert read_acc(80.0, 92.0, 92.0, 92.0) is Reading.COSTS_ACCURACY
    # our drop 10 vs the paper's 0 (not more than the margin) and below the paper: other
    assert read_acc(80.0, 91.0, 90.0, 91.0) is Reading.OTHER
    assert read_acc(70.0, 55.0, 72.0, 65.0) is Reading.COSTS_LESS
    assert read_acc(70.0, 85.0, 72.0, NAN) is Reading.OTHER


# --- cells, the threshold, evidence ---------------------------------------------------------


def run(seed, **metrics) -> dict:
    base = {
        "asr": 0.95,
        "clean_model_asr": 0.05,
        "backdoor_implanted": 1.0,
        "backdoored_collapsed": 0.0,
        "backdoored_acc": 0.90,
        "defended_asr": 0.50,
        "defended_acc": 0.85,
    }
    return {"seed": seed, "metrics": {**base, **metrics}}


def base_cell(runs, **paper) -> BaselineCell:
    figures = {
        "paper_asr": 50.0,
        "paper_acc": 85.0,
        "paper_backdoored_asr": 95.0,
        "paper_backdoored_acc": 90.0,
    }
    return BaselineCell(
        ("AIDS", "gcn", "gta"),
        "fine-pruning",
        "Fine-pruning",
        runs,
        **{
            **figures,
            **paper,
        },
    )


def test_only_differences_of_more_than_the_margin_are_listed():
    runs = [run(0), run(1)]
    assert far_rows([base_cell(runs, paper_asr=50.0 + FAR_POINTS)]) == []
    assert far_rows([base_cell(runs, paper_asr=50.0 - FAR_POINTS)]) == []
    rows = far_rows([base_cell(runs, paper_asr=50.0 + FAR_POINTS + 0.1)])
    assert [(r.measure, r.reading) for r in rows] == [(Measure.ASR, Reading.REMOVES_MORE)]
    assert rows[0].difference == pytest.approx(-(FAR_POINTS + 0.1))
    rows = far_rows([base_cell(runs, paper_acc=70.0)])
    assert [(r.measure, r.reading) for r in rows] == [(Measure.ACC, Reading.COSTS_LESS)]
    # no runs, or no paper figure: nothing to set beside it
    assert far_rows([base_cell([], paper_asr=0.0)]) == []
    assert far_rows([base_cell(runs, paper_asr=NAN, paper_acc=NAN)]) == []


def test_a_run_that_did_not_implant_makes_the_asr_not_comparable():
    runs = [run(0), run(1, backdoor_implanted=0.0), run(2, backdoored_collapsed=1.0)]
    assert incomparable(runs) == "not implanted in 1 of 3, collapsed in 1 of 3"
    assert incomparable(runs[:1]) is None
    row = far_rows([base_cell(runs, paper_asr=20.0)])[0]
    assert row.reading is Reading.NOT_COMPARABLE
    assert row.then is Reading.PARTIAL  # 50 after: 45 below the backdoored, no floor
    text = far_table([row])
    assert "(not implanted in 1 of 3, collapsed in 1 of 3; the figures alone: partial" in text


def test_defended_collapse_counts_only_when_every_run_collapsed():
    low = {"defended_asr": 0.01, "defended_target_no_trigger": 0.0}
    runs = [run(s, defended_collapsed=1.0, **low) for s in range(3)]
    assert far_rows([base_cell(runs)])[0].reading is Reading.DEFENDED_COLLAPSED
    runs[2]["metrics"]["defended_collapsed"] = 0.0
    assert far_rows([base_cell(runs)])[0].reading is Reading.REMOVES_MORE


def test_evidence_shows_means_and_a_dash_for_what_no_record_carries():
    runs = [
        run(0, fp_pruned_units=32.0, fp_units=64.0, fp_pruned_activity_share=0.3),
        run(1, fp_pruned_units=30.0, fp_units=64.0, fp_pruned_activity_share=0.4),
    ]
    assert evidence("fine-pruning", runs) == (
        "pruned units 31.0/64.0; pruned activity share 35.0; defender graphs —; "
        "majority share after —; no-trigger rate —; robust ACC —"
    )
    assert evidence("ed", [run(0, num_kept_graphs=10.0)]).startswith(
        "precision —; recall —; kept graphs —;"
    )
    assert evidence("unknown", []) == "majority share after —; no-trigger rate —; robust ACC —"


def test_table_and_summary_count_per_measure_and_reading():
    runs = [run(0), run(1, defended_acc=0.83)]
    rows = far_rows([base_cell(runs, paper_asr=20.0, paper_acc=60.0)])
    table = far_table(rows).splitlines()
    assert table[0] == "| " + " | ".join(FAR_HEADER) + " |"
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:11] == [
        "AIDS",
        "gcn",
        "gta",
        "Fine-pruning",
        "ASR",
        "50.0",
        "20.0",
        "+30.0",
        "95.0 / 95.0",
        "0, 1",
        "partial removal",
    ]
    acc = [c.strip() for c in table[3].strip("|").split("|")]
    assert acc[4:9] == ["ACC", "84.0", "60.0", "+24.0", "90.0 / 90.0"]
    assert far_summary(rows) == {
        "far_cells": "1",
        "far_asr": "1",
        "far_acc": "1",
        "far_asr_readings": "partial removal 1",
        "far_acc_readings": "costs less than the paper's 1",
        "far_limit": f"{FAR_POINTS:g}",
    }
    assert far_table([]) == ""
    assert far_summary([])["far_asr_readings"] == "none"
    assert math.isclose(rows[1].difference, 24.0)


def test_evidence_names_how_many_runs_a_partly_carried_mean_rests_on():
    runs = [run(0, defended_target_no_trigger=0.04), run(1), run(2)]
    text = evidence("unknown", runs)
    assert "no-trigger rate 4.0 (1 of 3 runs)" in text
    assert "robust ACC —;" not in text and text.endswith("robust ACC —")
    runs = [run(s, defended_target_no_trigger=0.04) for s in range(3)]
    assert "no-trigger rate 4.0;" in evidence("unknown", runs)
