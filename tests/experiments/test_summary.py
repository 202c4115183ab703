"""The compact report, its glossary, the plain-language account and the figures, from
hand-made records (no runs)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from gnnbackdoor.errors import UserError
from gnnbackdoor.experiments.figures import held_out_footnotes, write_figures
from gnnbackdoor.experiments.summary import (
    GLOSSARY,
    Format,
    account,
    build_rows,
    summary_report,
)

SETTINGS = {"train.max_epochs": "40"}


def _record(task, dataset, model, attack, defense, seed, metrics, overrides=None, **extra):
    return {
        "task": task,
        "dataset": dataset,
        "model": model,
        "attack": attack,
        "defense": defense,
        "seed": seed,
        "overrides": dict(overrides if overrides is not None else SETTINGS),
        "metrics": metrics,
        "timings": {"defense_s": 2.0} if defense else {},
        "attack_info": extra.get("attack_info", {}),
    }


GRAPH_ATTACK = {
    "clean_acc": 1.0,
    "backdoored_acc": 0.98,
    "asr": 0.95,
    "clean_model_asr": 0.05,
    "num_classes": 3,
    "num_eval_graphs": 60,
    "num_triggered": 40,
}
SHIELD = {
    **GRAPH_ATTACK,
    "defended_acc": 0.34,
    "defended_asr": 0.10,
    "defended_target_no_trigger": 0.08,
    "queried_graphs": 500,
}
REPAIR = {**GRAPH_ATTACK, "defended_acc": 0.9, "defended_asr": 0.2}
LINK = {
    "clean_auc": 0.9,
    "backdoored_auc": 0.88,
    "bpd": 0.02,
    "asr": 1.0,
    "amc": 0.9,
    "clean_model_asr": 1.0,
    "no_trigger_rate": 0.3,
}
EXAMPLE = {
    "num_nodes": 6,
    "edges": [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [2, 4]],
    "trigger_nodes": [2, 3, 4],
    "label": 1,
    "target_class": 0,
    "clean_prediction": 1,
    "backdoored_prediction": 0,
}


def _records():
    records = [
        _record("graph", "Motifs", "gin", "sba", None, 0, GRAPH_ATTACK),
        _record("graph", "Motifs", "gin", "sba", "graphprot-tf", 0, SHIELD),
        _record("graph", "Motifs", "gin", "sba", "gcleaner", 0, REPAIR, {**SETTINGS, "h": "1"}),
        _record("graph", "Motifs", "gin", None, None, 0, {"clean_acc": 1.0}),
    ]
    records[0]["attack_info"] = {"example_graph": EXAMPLE}
    for seed, asr in ((0, 1.0), (1, 0.9)):
        records.append(_record("link", "SBM", "gae", "link-backdoor", None, seed, {**LINK}, {}))
        records[-1]["metrics"]["asr"] = asr
    return records


def test_summary_shows_arrows_and_std_only_with_two_seeds():
    text = summary_report(_records())
    attack_row = next(
        line for line in text.splitlines() if line.startswith("| Motifs | gin | sba | 1")
    )
    assert "100.0 → 98.0" in attack_row and "95.0" in attack_row and "±" not in attack_row
    link_row = next(line for line in text.splitlines() if line.startswith("| SBM |"))
    assert "95.0 ± 7.1" in link_row  # two seeds: mean ± sample std
    shield_row = next(line for line in text.splitlines() if "graphprot-tf" in line)
    assert "95.0 → 10.0" in shield_row and "98.0 → 34.0" in shield_row and "| 8.0 |" in shield_row
    assert "-64.0 pts acc, 2.0 s, 5.0 queries/graph" in shield_row
    assert "every run: train.max_epochs=40" in text and "| h=1 |" in text
    # the clean-only Motifs group is covered by its attack row
    assert not any(line.startswith("| Motifs | gin | none") for line in text.splitlines())


def test_glossary_explains_each_metric_shown_once():
    text = summary_report(_records())
    glossary = text.split("Glossary:")[1]
    for key in ("bpd", "amc", "no_trigger_rate", "floor", "clean_model_asr", "cost"):
        assert glossary.count(GLOSSARY[key]) == 1
    graph_only = summary_report([r for r in _records() if r["task"] == "graph"])
    assert GLOSSARY["amc"] not in graph_only and GLOSSARY["no_trigger_rate"] not in graph_only


def test_csv_and_json_hold_fractions_and_std_with_two_seeds():
    rows = list(csv.DictReader(io.StringIO(summary_report(_records(), Format.CSV))))
    link = next(r for r in rows if r["dataset"] == "SBM")
    assert float(link["asr"]) == pytest.approx(0.95) and float(link["asr_std"]) > 0
    shield = next(r for r in rows if r["defense"] == "graphprot-tf")
    assert "asr_std" not in shield or shield["asr_std"] == ""
    data = json.loads(summary_report(_records(), Format.JSON))
    assert {r["kind"] for r in data} == {"attack", "defense"}


def test_account_names_chance_the_floor_and_the_clean_model_explanation():
    lines = account(_records())
    shield = next(line for line in lines if line.startswith("graphprot-tf"))
    assert "no trigger at all" in shield and "is 8 %" in shield
    assert "at chance (33 % for 3 classes)" in shield and "no success" in shield
    repair = next(line for line in lines if line.startswith("gcleaner"))
    assert "chance" not in repair and "floor" not in repair
    link = next(line for line in lines if line.startswith("link-backdoor"))
    assert "Eq. 4" in link and "no-trigger rate (30 %)" in link
    # a trigger that does not fool the clean model gets no such explanation
    records = [
        _record("link", "SBM", "gae", "link-backdoor", None, 0, {**LINK, "clean_model_asr": 0.1})
    ]
    (_, sentence) = account(records)
    assert "Eq. 4" not in sentence and "10 %" in sentence


def test_empty_records_are_a_user_error():
    with pytest.raises(UserError):
        summary_report([])


def test_figures_are_written_from_records(tmp_path):
    records = _records()
    for surrogate, asr in (("vgae", 0.8), (None, 1.0)):
        overrides = {"attack.surrogate": surrogate} if surrogate else {}
        records.append(
            _record(
                "link", "Cora", "gae", "link-backdoor", None, 0, {**LINK, "asr": asr}, overrides
            )
        )
        # pages and figures select by the resolved configuration, never by typed text
        records[-1]["config"] = {"attack": {"surrogate": surrogate, "p": 0.1, "warmup_epochs": 0}}
    written = write_figures(records, tmp_path / "figures")
    names = sorted(p.name for p in written)
    assert names == [
        "attacks_Cora.png",
        "attacks_Motifs.png",
        "attacks_SBM.png",
        "blackbox_Cora.png",
        "defenses_Motifs.png",
        "triggered_graph_Motifs_sba.png",
    ]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_the_defense_figure_footnotes_a_defender_that_holds_out_graphs(tmp_path):
    held = {**REPAIR, "num_defender_graphs": 20, "num_eval_graphs": 40}
    records = [
        _record("graph", "Motifs", "gin", "sba", "gcleaner", 0, held),
        _record("graph", "Motifs", "gin", "sba", "graphprot-tf", 0, SHIELD),
    ]
    rows = build_rows(records)
    assert held_out_footnotes([r for r in rows if r.kind == "defense"]) == [
        "* gcleaner: before and after scored on the 40 evaluation graphs it did not hold out "
        "(20 held out), not the whole test set"
    ]
    assert held_out_footnotes([r for r in rows if r.defense == "graphprot-tf"]) == []
    (figure,) = [p for p in write_figures(records, tmp_path) if p.name.startswith("defenses")]
    assert figure.read_bytes()[:4] == b"\x89PNG"


def _at_threads(record, threads):
    record["config"] = {"runtime": {"threads": threads}}
    return record


def test_one_seed_at_two_thread_counts_is_two_configurations_not_two_seeds():
    records = [
        _at_threads(_record("link", "SBM", "gae", "link-backdoor", None, 0, {**LINK}, {}), n)
        for n in (1, 2)
    ]
    records[1]["metrics"]["asr"] = 0.5
    rows = list(csv.DictReader(io.StringIO(summary_report(records, Format.CSV))))
    assert [(r["settings"], r["seeds"], float(r["asr"])) for r in rows] == [
        ("runtime.threads=1", "1", 1.0),
        ("runtime.threads=2", "1", 0.5),
    ]
    compact = summary_report(records)
    (row,) = [line for line in compact.splitlines() if line.startswith("| SBM |")]
    assert "±" not in row and "100.0" in row  # the 1-thread run, shown alone
    # one thread count throughout: the settings text is left as it was
    same = summary_report([_at_threads(r, 1) for r in records], Format.CSV)
    assert {r["settings"] for r in csv.DictReader(io.StringIO(same))} == {""}
    assert {r["seeds"] for r in csv.DictReader(io.StringIO(same))} == {"2"}


def test_defended_runs_at_two_thread_counts_give_two_attack_rows():
    records = [
        _at_threads(_record("graph", "Motifs", "gin", "sba", "graphprot-tf", 0, SHIELD), n)
        for n in (1, 2)
    ]
    rows = list(csv.DictReader(io.StringIO(summary_report(records, Format.CSV))))
    attack = [r for r in rows if r["kind"] == "attack"]
    assert sorted(r["settings"].split(",")[-1] for r in attack) == [
        "runtime.threads=1",
        "runtime.threads=2",
    ]
    assert {r["seeds"] for r in attack} == {"1"}
