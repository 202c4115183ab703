"""The gcleaner page renders from records alone and puts the paper's rows beside ours;
records are selected by their resolved configuration, never by their overrides' text;
Table III is judged on implanted, non-collapsed runs (issue 14 item 5), protocol rows apart
from the majority-target sensitivity and the pre-protocol records."""

from __future__ import annotations

import math

import pytest

from gnnbackdoor.defenses.gcleaner import GCleaner
from gnnbackdoor.experiments.pages import PAGES, load_pages
from gnnbackdoor.experiments.pages.common import nested, resolved
from gnnbackdoor.experiments.pages.gcleaner import (
    ABLATION_SETTINGS,
    GCLEANER_DEFAULTS,
    PROTOCOL,
    controls_summary,
    exclusion,
    implanted,
    judge_row,
    pre_protocol_runs,
    protocol_runs,
    summarise,
)
from gnnbackdoor.experiments.protocol import PROTOCOL_TARGET_CLASS


def record(
    seed: int,
    defended_asr: float,
    *,
    dataset: str = "AIDS",
    attack: str = "sba",
    target: int | None = None,
    norm: str = "batch_norm",
    metrics: dict | None = None,
    **defense,
) -> dict:
    """A GCleaner record on the protocol (batch-norm victim, the dataset's protocol target,
    GCleaner's defaults) unless told otherwise; ``defense`` overrides GCleaner settings."""
    target = PROTOCOL_TARGET_CLASS[dataset] if target is None else target
    settings = {
        **PROTOCOL,
        **ABLATION_SETTINGS,
        **GCLEANER_DEFAULTS,
        "attack.target_class": target,
        "model.norm": norm,
        **{f"defense.{k}": v for k, v in defense.items()},
    }
    return {
        "task": "graph",
        "dataset": dataset,
        "model": "gin",
        "attack": attack,
        "defense": "gcleaner",
        "seed": seed,
        "overrides": {k: str(v) for k, v in defense.items()},  # information only
        "config": nested(settings),
        "metrics": {
            "backdoored_acc": 0.97,
            "asr": 0.95,
            "clean_model_asr": 0.05,
            "backdoor_implanted": 1.0,
            "backdoored_collapsed": 0.0,
            "defended_collapsed": 0.0,
            "gc_teacher_refused": 0.0,
            "defended_acc": 0.96,
            "defended_asr": defended_asr,
            "gc_oracle_asr": 0.02,
            "gc_oracle_acc": 0.96,
            "gc_notrigger_asr": 0.5,
            "gc_notrigger_acc": 0.96,
            "gc_trigger_cosine": 0.55,
            "der": 0.95,
            "defended_robust_acc": 0.9,
            "defended_target_no_trigger": 0.01,
            "gc_recovery_similarity": 0.9,
            "gc_clean_similarity": 0.3,
            f"gc_recovery_asr_c{1 - target}": 0.0,
            f"gc_recovery_asr_c{target}": 0.8,
            f"gc_unlearned_recovery_asr_c{target}": 0.1,
            f"gc_recovery_clean_model_asr_c{target}": 0.3,
            "num_defender_graphs": 60,
            **(metrics or {}),
        },
        "timings": {"gcleaner_recovery_s": 5.0, "gcleaner_unlearning_s": 4.0},
        "versions": {"git_commit": "abc", "torch": "t", "torch_geometric": "p"},
    }


#: Third cells of the baselines' and Table VII's lines (issue 17), which ``line`` skips so
#: that it counts GCleaner's own tables.
BASELINE_CELLS = ("ABL", "Prune", "Randomized-Smoothing", "ED", "XGBD", "GCleaner")


def line(text: str, start: str, nth: int = 0) -> str:
    rows = [row for row in text.splitlines() if row.startswith(start)]
    return [row for row in rows if cells(row)[2] not in BASELINE_CELLS][nth]


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_protocol_defaults_are_gcleaners_registered_defaults():
    defaults = GCleaner()
    for path, value in GCLEANER_DEFAULTS.items():
        node = defaults
        for part in path.split(".")[1:]:
            node = getattr(node, part)
        assert str(getattr(node, "value", node)) == str(value), path


def test_page_shows_ours_beside_the_paper():
    load_pages()
    records = [
        record(0, 0.04),
        record(1, 0.06),
        record(2, 0.05),
        record(0, 0.2, num_trigger_nodes=5),
    ]
    text = PAGES.get("gcleaner")(records)
    row = line(text, "| AIDS | Sub-BA")
    assert "| 0 |" in row  # the protocol target of AIDS
    assert "5.00 ± 1.00 (3)" in row  # ASR after, mean ± std over 3 seeds
    assert "| 95.84 |" in row and "| 6.64 |" in row  # Table III: before and GCleaner
    assert cells(row)[-1] == "met"
    n5 = line(text, "| 5 |")
    assert "20.00 ± 0.00 (1)" in n5 and "| 2.14 |" in n5  # Table VIII
    recovery = line(text, "| AIDS | Sub-BA (SBA) | 0.300")
    assert "| 80.00 ± 0.00 (3) | 30.00 ± 0.00 (3) | 10.00 ± 0.00 (3) |" in recovery
    assert "met on **1 of 1 judged rows**" in text
    assert "No records yet for 15 of 16 rows" in text


def test_controls_table_sets_oracle_and_no_trigger_beside_gcleaner():
    load_pages()
    text = PAGES.get("gcleaner")([record(s, 0.05) for s in range(3)])
    header = cells(line(text, "| dataset | attack | ASR GCleaner"))
    row = dict(zip(header, cells(line(text, "| AIDS | Sub-BA", 1)), strict=True))
    assert row["ASR GCleaner"] == "5.00 ± 0.00 (3)"
    assert row["ASR oracle"] == "2.00 ± 0.00 (3)"
    assert row["ASR no trigger"] == "50.00 ± 0.00 (3)"
    assert row["DER"] == "0.950 ± 0.000 (3)"
    assert row["robust acc"] == "90.00 ± 0.00 (3)"
    assert row["defended no-trigger rate"] == "1.00 ± 0.00 (3)"
    assert row["clean-model ASR"] == "5.00 ± 0.00 (3)"
    assert (
        row["Table IV cosine"].startswith("0.550") and row["paper Table IV similarity"] == "0.625"
    )
    assert "0.900" not in line(text, "| AIDS | Sub-BA", 1)  # the Eq. 8 score is not Table IV's
    # the no-trigger control at 50 % misses; the oracle meets
    assert "oracle) meets the target on 1 of 1 rows" in text
    assert "untriggered copies on 0 of 1" in text


def test_selection_reads_the_resolved_configuration_not_the_overrides():
    load_pages()
    records = [record(0, 0.04), record(1, 0.06), record(2, 0.05)]
    # a default spelled out on the command line is the same run as an omitted one
    records[0]["overrides"] = {"defense.num_trigger_nodes": "3", "defense.holding_rate": "0.03"}
    # overrides that say nothing do not make an ablation run a Table III run
    varied = record(0, 0.2, num_trigger_nodes=5)
    varied["overrides"] = {}
    text = PAGES.get("gcleaner")([*records, varied])
    assert "5.00 ± 1.00 (3)" in line(text, "| AIDS | Sub-BA")
    assert "20.00 ± 0.00 (1)" in line(text, "| 5 |")
    other = record(0, 0.9)
    other["config"]["data"]["train_fraction"] = 0.6667  # another protocol: not on the page
    assert PAGES.get("gcleaner")([*records, varied, other]).count("(3)") == text.count("(3)")


def test_groups_protocol_sensitivity_and_pre_protocol():
    main = record(0, 0.05)
    majority = record(0, 0.05, target=1)  # AIDS's majority class
    old = record(0, 0.05, target=1, norm="none")
    old["config"]["defense"]["unlearning"].update(lr=0.05, teacher_lr=None, teacher_holdout=0.0)
    for name in ("gc_oracle_asr", "gc_oracle_acc", "gc_notrigger_asr", "gc_notrigger_acc"):
        del old["metrics"][name]  # made before issue 20's controls
    records = [main, majority, old]
    assert protocol_runs(records) == [main]
    assert protocol_runs(records, target="sensitivity") == [majority]
    assert pre_protocol_runs(records) == [old]
    variant = record(0, 0.05, **{"recovery.prior": "feature"})
    assert protocol_runs([variant]) == []
    assert protocol_runs([variant], {"defense.recovery.prior": "feature"}) == [variant]
    teacher_05 = record(0, 0.05)
    teacher_05["config"]["defense"]["unlearning"]["teacher_lr"] = 0.05
    assert protocol_runs([teacher_05]) == []  # not GCleaner's defaults: no Table III row

    load_pages()
    text = PAGES.get("gcleaner")([*(record(s, 0.05) for s in range(3)), majority, old])
    assert line(text, "| AIDS | Sub-BA", 0).count("(3)") >= 4  # protocol: three seeds
    sensitivity = line(text, "| AIDS | Sub-BA", 2)  # after the protocol and controls rows
    assert "| 1 |" in sensitivity and "(1)" in sensitivity
    pre = text.split("## Pre-protocol records")[1]
    assert "1 records made before issue 14" in pre and "`model.norm` none" in pre
    assert "unlearning learning rate 0.05" in pre and "carry no oracle" in pre


def test_implanted_falls_back_on_the_rule_for_older_records():
    r = record(0, 0.05, metrics={"asr": 0.6, "clean_model_asr": 0.1})
    del r["metrics"]["backdoor_implanted"]
    assert implanted(r) is True
    r["metrics"]["clean_model_asr"] = 0.45  # only 15 points above the clean model
    assert implanted(r) is False
    del r["metrics"]["clean_model_asr"]
    assert implanted(r) is None
    assert exclusion(r) == "not implanted"  # unknown does not count as implanted


def test_judge_row_counts_only_implanted_non_collapsed_runs():
    good = [record(s, 0.02) for s in range(2)]
    weak = record(2, 0.6, metrics={"backdoor_implanted": 0.0, "asr": 0.3})
    verdict = judge_row([*good, weak])
    assert verdict.status == "met" and verdict.judged == 2 and verdict.runs == 3
    assert math.isclose(verdict.asr_after, 2.0)
    assert verdict.text == "met (on 2 of 3 runs)"
    collapsed = record(0, 1.0, metrics={"backdoored_collapsed": 1.0})
    verdict = judge_row([collapsed, weak])
    assert verdict.status == "excluded"
    assert verdict.reasons == [
        "not implanted in 1 of 2 runs",
        "backdoored model collapsed in 1 of 2 runs",
    ]
    assert judge_row([]).status == "missing" and judge_row([]).text == "—"


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"defended_asr": 0.08}, "ASR 8.00 > 7"),
        ({"defended_acc": 0.94}, "acc drop 3.00 > 2"),
        ({"defended_asr": 0.0, "defended_collapsed": 1.0}, "defended model collapsed in 1 of 1"),
        (
            {"defended_asr": 0.0, "gc_teacher_refused": 1.0},
            "teacher refused (no unlearning) in 1 of 1",
        ),
    ],
)
def test_judge_row_misses(metrics, reason):
    verdict = judge_row([record(0, 0.05, metrics=metrics)])
    assert verdict.status == "missed"
    assert verdict.reasons == [reason]


def test_a_refused_teacher_with_a_stand_in_is_judged_on_its_figures():
    metrics = {"defended_asr": 0.0, "gc_teacher_refused": 1.0, "gc_teacher_fallback_used": 1.0}
    assert judge_row([record(0, 0.05, metrics=metrics)]).status == "met"
    metrics["defended_asr"] = 0.5
    assert judge_row([record(0, 0.05, metrics=metrics)]).reasons == ["ASR 50.00 > 7"]


def test_controls_are_judged_alike_and_summaries_count_rows():
    runs = [
        record(0, 0.2, metrics={"gc_oracle_asr": 0.01, "gc_notrigger_asr": 0.3}),
        record(0, 0.01, dataset="Bitcoin", metrics={"gc_oracle_asr": 0.01}),
        record(0, 0.5, dataset="COLLAB", metrics={"backdoor_implanted": 0.0}),
    ]
    counts = controls_summary(runs)
    assert counts == {"recovered": (1, 2), "oracle": (2, 2), "notrigger": (0, 2)}
    verdicts = {f"{r['dataset']}/sba": judge_row([r]) for r in runs}
    verdicts["Fingerprint4/sba"] = judge_row([])
    summary = summarise(verdicts)
    assert (summary["met"], summary["judged"], summary["excluded"], summary["missing"]) == (
        1,
        2,
        1,
        1,
    )
    assert summary["missed_list"] == "AIDS/sba"
    assert summary["excluded_list"] == "COLLAB/sba: not implanted in 1 of 1 runs"
    assert summary["missing_list"] == "Fingerprint4/sba"


def test_feature_prior_variant_beside_the_papers_recovery():
    load_pages()
    paper = [record(s, 0.4, metrics={"gc_trigger_cosine": 0.1}) for s in range(3)]
    ours = [
        record(s, 0.05, metrics={"gc_trigger_cosine": 0.8}, **{"recovery.prior": "feature"})
        for s in range(3)
    ]
    text = PAGES.get("gcleaner")([*paper, *ours])
    section = text.split("## Ours: a recovery with a feature prior")[1].split("## Sensitivity")[0]
    header = cells(line(section, "| attack | n |"))
    rows = [dict(zip(header, cells(r), strict=True)) for r in section.splitlines()
            if r.startswith("| Sub-BA (SBA) | 3 |")]  # fmt: skip
    assert [r["recovery"] for r in rows] == ["paper (Eq. 8 only)", "feature prior (ours)"]
    assert rows[0]["ASR after"] == "40.00 ± 0.00 (3)" and rows[0]["within 7 of oracle"] == "no"
    assert rows[1]["ASR after"] == "5.00 ± 0.00 (3)" and rows[1]["within 7 of oracle"] == "yes"
    assert rows[1]["Table IV cosine"].startswith("0.800") and rows[1]["paper ASR after"] == "6.64"
    assert "cosine ≥ 0.6 on 1 of 1 rows" in section
    assert "the paper's recovery on 0 and 0 of 1" in section
    assert resolved(ours[0], "defense.recovery.prior") == "feature"
    # the variant's runs are not Table III's
    assert "40.00 ± 0.00 (3)" in line(text, "| AIDS | Sub-BA")


def test_table_iv_shows_the_trigger_cosine_beside_the_paper_not_the_eq8_score():
    """Table IV's similarity is the cosine between original- and recovered-trigger
    embeddings (``gc_trigger_cosine``); GCleaner's centred Eq. 8 score
    (``gc_recovery_similarity``, 0.9 in these records) never sits beside it."""
    load_pages()
    records = [record(seed, 0.05) for seed in range(3)]
    records.append(record(0, 0.2, explainer="random"))  # an ablation: the table is shown
    text = PAGES.get("gcleaner")(records)
    row = line(text, "| GNNExplainer | Sub-BA")
    assert cells(row)[2].startswith("0.550") and cells(row)[3] == "0.625"
    assert "0.900" not in row
    header = line(text, "| placement |")
    assert "cosine, original vs recovered trigger | paper similarity" in header


def test_no_records_say_so_with_the_rerun_command():
    load_pages()
    text = PAGES.get("gcleaner")([])
    assert (
        "No records yet (protocol): rerun with `gnnbackdoor sweep experiments/gcleaner.yaml" in text
    )
    assert "No records yet for the variant" in text
    assert "No ablation records on the protocol yet: rerun with `gnnbackdoor sweep " in text
    assert "0.05" not in text.split("## Table III")[0]  # the old learning rate is not current


@pytest.mark.parametrize("name", ["gcleaner", "gcleaner_ablations"])
def test_gcleaner_sweeps_run_the_protocol(name):
    """Every run of the GCleaner sweeps targets its dataset's protocol class, except the
    labelled AIDS target-1 sensitivity block; victims and GCleaner at registered defaults
    but for the settings the page varies."""
    from pathlib import Path

    from gnnbackdoor.experiments.runner import identify
    from gnnbackdoor.experiments.sweep import load_sweep

    specs = load_sweep(Path(__file__).parents[2] / "experiments" / f"{name}.yaml")
    off_protocol = set()
    for spec in specs:
        config = identify(spec).config
        assert config["model"]["norm"] == "batch_norm"
        unlearning = config["defense"]["unlearning"]
        assert (unlearning["lr"], unlearning["teacher_lr"]) == (0.01, 0.01)
        if config["attack"]["target_class"] != PROTOCOL_TARGET_CLASS[spec.dataset]:
            off_protocol.add((spec.dataset, config["attack"]["target_class"]))
    assert off_protocol <= {("AIDS", 1)}
    assert bool(off_protocol) == (name == "gcleaner")
