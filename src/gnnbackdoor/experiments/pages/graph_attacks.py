"""``graph_attacks``: SBA, GTA, Exp-BA and Motif-BA on graph classification beside GraphProt
Tables 1-2 and GCleaner Table III ("Before"), on issue 14's protocol.

Main tables hold protocol-target runs (``protocol.is_protocol_target``); majority-target
runs go to the Sensitivity section. A cell uses its runs on issue 14's victims
(batch norm) when it has any, else its runs on older victims, marked † and not judged.
Each table is judged (:func:`judge_table`) as issue 14's "Done when" asks: collapsed
backdoored models (listed), the mean backdoored accuracy cost (clean − backdoored, points,
target ≤ :data:`COST_TARGET`), and ASR ≥ 80 % wherever the paper reports ≥ 80 %.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gnnbackdoor.experiments.pages import page
from gnnbackdoor.experiments.pages.common import (
    cell,
    differs,
    num,
    paper_value,
    provenance,
    resolved,
    shown,
    where,
)
from gnnbackdoor.experiments.pages.graphprot_summary import (
    collapsed,
    implanted,
    is_protocol_victim,
)
from gnnbackdoor.experiments.pages.template import PageTemplate
from gnnbackdoor.experiments.protocol import PROTOCOL_TARGET_CLASS, is_protocol_target
from gnnbackdoor.experiments.report import markdown_table, paper_lookup, reference_table

ATTACKS = ["sba", "gta", "exp-ba", "motif-ba"]
#: The GraphProt protocol's injection ratio (GraphProt states none) and its clean validation
#: graphs; runs with other attack settings are the attack-settings sensitivity section's
#: (issue 14 item 3), never the main tables'.
PROTOCOL_INJECTION_RATIO = 0.1
PROTOCOL_POISON_VALIDATION = False
ATTACK_TITLES = {
    "sba": "SBA",
    "gta": "GTA",
    "exp-ba": "Exp-BA",
    "motif-ba": "Motif-BA",
    "sba-degree": "SBA, trigger nodes' degree features recomputed",
}
#: Measurement variants of an attack (registered name: the attack it varies): never in the
#: main tables; the attack-settings section shows them beside their attack's cells.
VARIANTS = {"sba-degree": "sba"}
MODELS = ["gcn", "gat", "gin", "sage"]
GRAPHPROT_DATASETS = ["AIDS", "PROTEINS", "NCI1", "ENZYMES", "DHFR", "COLLAB"]
GCLEANER_DATASETS = ["AIDS", "COLLAB", "Fingerprint", "Bitcoin"]
#: The registered dataset behind a GCleaner table name (its 1,661-graph Fingerprint subset).
GCLEANER_RECORD_NAMES = {"Fingerprint": "Fingerprint4"}

#: The two protocols, as resolved settings; the target class is each dataset's protocol
#: class (main tables) or another one (Sensitivity), chosen by ``is_protocol_target``.
GRAPHPROT = {
    "data.train_fraction": 0.6667,
    "attack.trigger_size": 5,
    "attack.injection_ratio": PROTOCOL_INJECTION_RATIO,
    "attack.poison_validation": PROTOCOL_POISON_VALIDATION,
}
#: The attack settings the sensitivity section varies, at the protocol's values.
TUNED = {k: v for k, v in GRAPHPROT.items() if k in ("attack.injection_ratio",
                                                     "attack.poison_validation",
                                                     "attack.trigger_size")}  # fmt: skip
GCLEANER = {
    "data.train_fraction": 0.8,
    "attack.trigger_fraction": 0.3,
    "attack.poison_validation": True,
}

ASR_SLACK = 5.0  # points: ASR within 5 of the paper's, or higher
ACC_SLACK = 2.0  # points: backdoored accuracy within 2 of the clean model's
COST_TARGET = 3.0  # points: issue 14's mean backdoored accuracy cost per table
PAPER_ASR_HIGH = 80.0  # percent: where the paper reports at least this, so must we
#: Marks a cell whose victims were trained before issue 14 (``model.norm`` ``"none"``).
PRE_PROTOCOL = "†"

HEADER = [
    "dataset",
    "model",
    "clean acc",
    "backdoored acc",
    "Δacc",
    "ASR",
    "clean-model ASR",
    "implanted",
    "collapsed",
    "single-node ASR",
    "trigger rarity",
    "paper clean acc",
    "paper backdoored acc",
    "paper ASR",
    "paper clean-model ASR",
    "targets",
]
#: Columns of ``HEADER`` that ``_row`` fills from the records (the rest are the paper's).
OURS = 11


def _metric(record: dict[str, Any], name: str) -> float:
    """A record's metric, or (GTA's ``trigger_feature_rarity``) its ``attack_info`` entry;
    NaN when it has neither."""
    value = (record.get("metrics") or {}).get(name)
    if value is None:
        value = (record.get("attack_info") or {}).get(name)
    return float("nan") if value is None else float(value)


def _mean_points(runs: list[dict[str, Any]], name: str) -> float:
    values = [v for v in (_metric(r, name) for r in runs) if not math.isnan(v)]
    return 100 * sum(values) / len(values) if values else float("nan")


def _collapse_note(record: dict[str, Any]) -> str:
    """``"majority share x %"`` of a collapsed backdoored model, with its clean victim's
    (the same flag on the model never poisoned, on the same graphs) where the record has it:
    a clean victim as lopsided says the victim, not the backdoor, predicts one class."""
    note = f"majority share {num(_mean_points([record], 'backdoored_majority_share'), 1)} %"
    clean = _mean_points([record], "clean_majority_share")
    if math.isnan(clean):
        return note
    twin = ", collapsed too" if _metric(record, "clean_collapsed") == 1.0 else ""
    return f"{note}; clean victim {num(clean, 1)} %{twin}"


def judge_table(rows: list[tuple[str, list[dict[str, Any]], float]]) -> dict[str, Any]:
    """Issue 14's "Done when" for one table.

    ``rows``: ``(label, runs, paper ASR in percent or NaN)`` per row; rows whose runs are
    on pre-issue-14 victims (or have none) are not judged. Returns ``judged`` (rows
    judged), ``unjudged`` (rows with only older victims), ``collapsed`` (one
    ``"label seed s (majority share x %[; clean victim y %])"`` per collapsed backdoored
    model, :func:`_collapse_note`), ``cost`` (mean
    over judged rows of clean − backdoored accuracy, points; NaN without rows),
    ``cost_ok`` (``cost`` ≤ :data:`COST_TARGET`), ``high`` (judged rows where the paper
    reports ASR ≥ :data:`PAPER_ASR_HIGH`) and ``high_met`` (of those, ours ≥ it too),
    ``high_missed`` (their labels).
    """
    judged = unjudged = high = high_met = 0
    costs: list[float] = []
    down: list[str] = []
    missed: list[str] = []
    for label, runs, paper_asr in rows:
        if not runs:
            continue
        if not all(is_protocol_victim(r) for r in runs):
            unjudged += 1
            continue
        judged += 1
        costs.append(_mean_points(runs, "clean_acc") - _mean_points(runs, "backdoored_acc"))
        for r in sorted(runs, key=lambda r: r.get("seed", 0)):
            if collapsed(r):
                down.append(f"{label} seed {r.get('seed')} ({_collapse_note(r)})")
        if not math.isnan(paper_asr) and paper_asr >= PAPER_ASR_HIGH:
            high += 1
            if _mean_points(runs, "asr") >= PAPER_ASR_HIGH:
                high_met += 1
            else:
                missed.append(label)
    costs = [c for c in costs if not math.isnan(c)]
    cost = sum(costs) / len(costs) if costs else float("nan")
    return {
        "judged": judged,
        "unjudged": unjudged,
        "collapsed": down,
        "cost": cost,
        "cost_ok": not math.isnan(cost) and cost <= COST_TARGET,
        "high": high,
        "high_met": high_met,
        "high_missed": missed,
    }


def _judgement_line(template: PageTemplate, title: str, judged: dict[str, Any]) -> str:
    """One table's verdict (Markdown, from the ``judgement`` fragment)."""
    if not judged["judged"]:
        verdict = "no rows on issue 14's victims yet"
    else:
        verdict = "met" if judged["cost_ok"] else "not met"
    return template.fragment(
        "judgement",
        title=title,
        judged=judged["judged"],
        unjudged=judged["unjudged"],
        pre=PRE_PROTOCOL,
        n_collapsed=len(judged["collapsed"]),
        collapsed="; ".join(judged["collapsed"]) or "none",
        cost=num(judged["cost"], 2),
        cost_target=f"{COST_TARGET:.0f}",
        verdict=verdict,
        high=judged["high"],
        high_met=judged["high_met"],
        asr_high=f"{PAPER_ASR_HIGH:.0f}",
        missed=", ".join(judged["high_missed"]) or "none",
    )


def _generation(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """A cell's runs on issue 14's victims when it has any, else its older runs with the
    :data:`PRE_PROTOCOL` mark."""
    new = [r for r in runs if is_protocol_victim(r)]
    if new or not runs:
        return new, ""
    return runs, PRE_PROTOCOL


def _protocol(records: list[dict[str, Any]], keys: dict[str, Any]) -> list[dict[str, Any]]:
    """The attacked runs of ``records`` whose resolved settings match ``keys``."""
    return [r for r in where(records, keys) if r.get("attack")]


#: Settings of the trigger and the victim that defended sweeps also vary (GraphProt's Fig. 3
#: trigger patterns, victims trained on subgraphs), at this page's values: a defended run
#: with another value measured another attack or victim and never fills a cell here.
SAME_ATTACK_AND_VICTIM: dict[str, Any] = {
    "attack.pattern": "erdos_renyi",
    "train.subgraph_augmentation": 0.0,
}

#: Marks on cells whose figures come from a defended sweep's records (see ``_source``).
SOURCE_MARKS = {"graphprot": "ᴾ", "gcleaner": "ᴳ"}


def _defended_stage(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per seed from defended runs: a defended record's clean accuracy,
    backdoored accuracy, ASR and clean-model ASR are measured before its defense acts, and
    the runs of one seed that differ only in the defense share them."""
    by_seed: dict[Any, dict[str, Any]] = {}
    for r in records:
        by_seed.setdefault(r.get("seed"), r)
    return [by_seed[k] for k in sorted(by_seed, key=str)]


def _source(attack_only, defended, **cell_key) -> tuple[list[dict[str, Any]], str]:
    """The runs of one cell and their mark: of the attack sweep's own records and the
    undefended figures of each defended sweep, the source with the most seeds (ties: the
    attack sweep, then GraphProt's, whose evaluation set is the whole test split, then
    GCleaner's, whose defender holds 3 % of the data out)."""
    own, own_mark = _generation(where(attack_only, **cell_key))
    best: tuple[list[dict[str, Any]], str] = (own, own_mark)
    for family, mark in SOURCE_MARKS.items():
        runs = where(defended, **cell_key)
        family_runs, generation = _generation(
            _defended_stage([r for r in runs if str(r.get("defense", "")).startswith(family)])
        )
        if _better((family_runs, generation), best):
            best = (family_runs, mark + generation)
    return best


def _better(candidate: tuple[list, str], best: tuple[list, str]) -> bool:
    """Runs on issue 14's victims beat older ones; then more seeds win."""
    new_c = bool(candidate[0]) and PRE_PROTOCOL not in candidate[1]
    new_b = bool(best[0]) and PRE_PROTOCOL not in best[1]
    if new_c != new_b:
        return new_c
    return len(candidate[0]) > len(best[0])


def _row(runs, dataset, model, paper_bd, paper_clean, tally) -> list[str]:
    clean_text, clean = cell(runs, "clean_acc")
    bd_text, bd = cell(runs, "backdoored_acc")
    asr_text, asr = cell(runs, "asr")
    cm_text, _ = cell(runs, "clean_model_asr")
    paper_asr = paper_value(paper_bd, "asr")
    verdict = "—"
    done = f"{sum(implanted(r) for r in runs)} of {len(runs)}" if runs else "—"
    down = f"{sum(collapsed(r) for r in runs)} of {len(runs)}" if runs else "—"
    if runs and not all(is_protocol_victim(r) for r in runs):
        verdict = f"{PRE_PROTOCOL} not judged"
    elif runs:
        acc_ok = abs(bd - clean) <= ACC_SLACK
        asr_ok = asr >= paper_asr - ASR_SLACK if not math.isnan(paper_asr) else None
        verdict = ("ASR ok" if asr_ok else "ASR low") if asr_ok is not None else "no paper ASR"
        verdict += ", acc ok" if acc_ok else ", acc drop"
        tally["rows"] += 1
        tally["acc_ok"] += acc_ok
        if asr_ok is not None:
            tally["with_paper"] += 1
            tally["asr_ok"] += asr_ok
    return [
        dataset,
        model,
        clean_text,
        bd_text,
        num(bd - clean, signed=True),
        asr_text,
        cm_text,
        done,
        down,
        num(_mean_points(runs, "single_node_asr"), 1),
        num(_mean_points(runs, "trigger_feature_rarity"), 2),
        num(paper_value(paper_clean, "acc"), 1),
        num(paper_value(paper_bd, "acc"), 1),
        num(paper_asr, 1),
        num(paper_value(paper_clean, "asr"), 1),
        verdict,
    ]


def _tally_line(template: PageTemplate, tally: dict[str, int]) -> str:
    return template.fragment("tally", **tally, **_slack())


def _slack() -> dict[str, str]:
    return {"asr_slack": f"{ASR_SLACK:.0f}", "acc_slack": f"{ACC_SLACK:.0f}"}


GCLEANER_HEADER = [
    "attack",
    "dataset",
    "model",
    "clean acc",
    "backdoored acc",
    "Δacc",
    "ASR",
    "clean-model ASR",
    "implanted",
    "collapsed",
    "single-node ASR",
    "trigger rarity",
    "paper acc",
    "paper ASR",
    "trigger nodes",
    "targets",
]


@page(
    "graph_attacks",
    inputs=["results/graph_attacks", "results/graphprot", "results/gcleaner"],
)
def render(records: list[dict[str, Any]], template: PageTemplate | None = None) -> str:
    """Graph-classification backdoor attacks beside GraphProt and GCleaner."""
    template = template or PageTemplate.load("graph_attacks")
    undefended = [r for r in records if r.get("task") == "graph" and not r.get("defense")]
    graph = [r for r in undefended if r.get("attack") not in VARIANTS]
    defended = [
        r
        for r in records
        if r.get("task") == "graph" and r.get("defense") and not differs(r, SAME_ATTACK_AND_VICTIM)
    ]
    gp_all = _protocol(graph, GRAPHPROT)
    gc_all = _protocol(graph, GCLEANER)
    gp_def_all = _protocol(defended, GRAPHPROT)
    gc_def_all = _protocol(defended, GCLEANER)
    gp_records = [r for r in gp_all if is_protocol_target(r)]
    gc_records = [r for r in gc_all if is_protocol_target(r)]
    gp_defended = [r for r in gp_def_all if is_protocol_target(r)]
    gc_defended = [r for r in gc_def_all if is_protocol_target(r)]
    used: list[dict[str, Any]] = []
    table1 = reference_table("graphprot_table1_models_gta.csv")
    table2 = reference_table("graphprot_table2_attacks.csv")
    gp_models = paper_lookup(table1, ["attack", "defense", "dataset", "model"])
    gp_attacks = paper_lookup(table2, ["attack", "defense", "dataset"])
    before = [
        r for r in reference_table("gcleaner_table3_gin.csv") if r["defense"].startswith("Before")
    ]
    gcleaner = paper_lookup(before, ["attack", "dataset"])

    def graphprot_rows(attack: str, dataset: str, model: str, role: str):
        if attack == "gta":
            return gp_models(attack=attack, defense=role, dataset=dataset, model=model)
        return gp_attacks(attack=attack, defense=role, dataset=dataset)

    values: dict[str, Any] = {}
    gp_tally = {"rows": 0, "acc_ok": 0, "asr_ok": 0, "with_paper": 0}
    for attack in ATTACKS:
        body = []
        judged_rows = []
        for dataset in GRAPHPROT_DATASETS:
            for model in MODELS:
                runs, mark = _source(
                    gp_records, gp_defended, dataset=dataset, model=model, attack=attack
                )
                used += runs
                paper_bd = graphprot_rows(attack, dataset, model, "Backdoored Model")
                paper_clean = graphprot_rows(attack, dataset, model, "Clean Model")
                if not runs and paper_bd is None and dataset == "COLLAB":
                    continue
                row = _row(runs, dataset, model, paper_bd, paper_clean, gp_tally)
                row[1] += mark
                body.append(row)
                judged_rows.append((f"{dataset} {model}", runs, paper_value(paper_bd, "asr")))
        key = attack.replace("-", "")
        values[f"{key}_table"] = markdown_table(HEADER, body)
        values[f"{key}_judgement"] = _judgement_line(
            template, ATTACK_TITLES[attack], judge_table(judged_rows)
        )
    values["graphprot_tally"] = _tally_line(template, gp_tally)
    sensitivity, sensitivity_used = _sensitivity_section(
        template,
        [r for r in gp_all if not is_protocol_target(r)],
        [r for r in gp_def_all if not is_protocol_target(r)],
        graphprot_rows,
    )
    values["sensitivity_section"] = sensitivity
    used += sensitivity_used
    settings_section, settings_used = _settings_section(
        template,
        [r for r in _protocol(undefended, _untuned(GRAPHPROT)) if is_protocol_target(r)],
        gp_records,
        gp_defended,
    )
    values["settings_section"] = settings_section
    used += settings_used

    gc_tally = {"rows": 0, "acc_ok": 0, "asr_ok": 0, "with_paper": 0}
    body = []
    judged_rows = []
    for dataset in GCLEANER_DATASETS:
        for attack in ATTACKS:
            runs, mark = _source(
                gc_records,
                gc_defended,
                model="gin",
                attack=attack,
                dataset=GCLEANER_RECORD_NAMES.get(dataset, dataset),
            )
            used += runs
            paper = gcleaner(attack=attack, dataset=dataset)
            if not runs and dataset == "Bitcoin":
                continue
            row = _row(runs, dataset, "gin", paper, None, gc_tally)
            row[1] += mark
            judged_rows.append(
                (f"{ATTACK_TITLES[attack]} {dataset}", runs, paper_value(paper, "asr"))
            )
            sizes = sorted({r.get("attack_info", {}).get("trigger_size") for r in runs} - {None})
            body.append([ATTACK_TITLES[attack], *row[:OURS], num(paper_value(paper, "acc")),
                         num(paper_value(paper, "asr")), ", ".join(map(str, sizes)) or "—",
                         row[-1]])  # fmt: skip
    values["gcleaner_table"] = markdown_table(GCLEANER_HEADER, body)
    values["gcleaner_tally"] = _tally_line(template, gc_tally)
    values["gcleaner_judgement"] = _judgement_line(
        template, "GCleaner protocol", judge_table(judged_rows)
    )
    values["targets"] = ", ".join(f"{d} {c}" for d, c in PROTOCOL_TARGET_CLASS.items())
    coverage, collab = _coverage(
        template,
        lambda **key: _source(gp_records, gp_defended, **key),
        lambda **key: _source(
            gc_records,
            gc_defended,
            **{**key, "dataset": GCLEANER_RECORD_NAMES.get(key["dataset"], key["dataset"])},
        ),
    )
    return template.render(
        **values,
        **_slack(),
        coverage=coverage,
        collab=collab,
        **provenance(used),
    )


def _sensitivity_section(
    template: PageTemplate, records: list[dict[str, Any]], defended: list[dict[str, Any]],
    graphprot_rows,
) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """The GraphProt-protocol cells also measured with a majority target class (Markdown,
    ending in a blank line; empty without such records), and their records."""
    tally = {"rows": 0, "acc_ok": 0, "asr_ok": 0, "with_paper": 0}
    body = []
    used: list[dict[str, Any]] = []
    for attack in ATTACKS:
        for dataset in GRAPHPROT_DATASETS:
            for target in sorted({resolved(r, "attack.target_class") for r in records
                                  if r.get("dataset") == dataset}, key=str):  # fmt: skip
                for model in MODELS:
                    runs, mark = _source(
                        where(records, {"attack.target_class": target}),
                        where(defended, {"attack.target_class": target}),
                        dataset=dataset,
                        model=model,
                        attack=attack,
                    )
                    if not runs:
                        continue
                    used += runs
                    paper_bd = graphprot_rows(attack, dataset, model, "Backdoored Model")
                    paper_clean = graphprot_rows(attack, dataset, model, "Clean Model")
                    row = _row(runs, dataset, model, paper_bd, paper_clean, tally)
                    row[1] += mark
                    body.append([ATTACK_TITLES[attack], str(target), *row])
    if not body:
        return "", []
    text = template.fragment(
        "sensitivity",
        table=markdown_table(["attack", "target", *HEADER], body),
        tally=_tally_line(template, tally),
    )
    return text + "\n\n", used


def _untuned(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in TUNED}


SETTINGS_HEADER = [
    "attack",
    "dataset",
    "model",
    "injection ratio",
    "validation poisoned",
    "trigger nodes",
    "clean acc",
    "backdoored acc",
    "ASR",
    "clean-model ASR",
    "implanted",
    "collapsed",
]


def _settings_section(
    template: PageTemplate,
    records: list[dict[str, Any]],
    protocol: list[dict[str, Any]],
    defended: list[dict[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """Issue 14 item 3: the GraphProt-protocol cells also measured with other attack settings
    (:data:`TUNED`: injection ratio, poisoned validation graphs, trigger size; ``records``: protocol
    target, undefended, any such settings, and the :data:`VARIANTS` at any settings), each
    beside its protocol cell (from ``protocol`` and ``defended`` as in the main tables), so a
    cell whose attack does not implant under the protocol shows whether more poisoning, model
    selection on poisoned validation graphs, a larger trigger or a variant of the attack
    would. Markdown ending in a blank line (empty without such records) and the
    records it used."""
    others = [r for r in records if differs(r, TUNED) or r.get("attack") in VARIANTS]

    def order(c: tuple[Any, Any, Any]) -> tuple[Any, ...]:
        base = VARIANTS.get(c[0], c[0])
        rank = ATTACKS.index(base) if base in ATTACKS else len(ATTACKS)
        return (rank, str(base), str(c[1]), str(c[2]), c[0] in VARIANTS, str(c[0]))

    shown_cells = {(r.get("attack"), r.get("dataset"), r.get("model")) for r in others}
    shown_cells |= {(VARIANTS[a], d, m) for a, d, m in shown_cells if a in VARIANTS}
    cells = sorted(shown_cells, key=order)
    body: list[list[str]] = []
    used: list[dict[str, Any]] = []
    for attack, dataset, model in cells:
        base, mark = _source(protocol, defended, dataset=dataset, model=model, attack=attack)
        protocol_key = (
            PROTOCOL_INJECTION_RATIO,
            PROTOCOL_POISON_VALIDATION,
            int(GRAPHPROT["attack.trigger_size"]),
        )
        runs_by_setting: dict[tuple[float, bool, int], tuple[list[dict[str, Any]], str]] = {
            protocol_key: (base, mark)
        }
        for r in where(others, dataset=dataset, model=model, attack=attack):
            setting = (
                float(resolved(r, "attack.injection_ratio")),
                bool(resolved(r, "attack.poison_validation")),
                int(resolved(r, "attack.trigger_size")),
            )
            runs_by_setting.setdefault(setting, ([], ""))[0].append(r)
        for setting in sorted(runs_by_setting):
            runs, cell_mark = runs_by_setting[setting]
            if not runs:
                continue
            used += runs
            body.append(
                [
                    ATTACK_TITLES.get(attack, attack),
                    dataset,
                    model + cell_mark,
                    shown(setting[0]),
                    "yes" if setting[1] else "no",
                    str(setting[2]),
                    cell(runs, "clean_acc")[0],
                    cell(runs, "backdoored_acc")[0],
                    cell(runs, "asr")[0],
                    cell(runs, "clean_model_asr")[0],
                    f"{sum(implanted(r) for r in runs)} of {len(runs)}",
                    f"{sum(collapsed(r) for r in runs)} of {len(runs)}",
                ]
            )
    if not body:
        return "", []
    text = template.fragment(
        "attack_settings",
        table=markdown_table(SETTINGS_HEADER, body),
        protocol=shown(PROTOCOL_INJECTION_RATIO),
        footprint=_footprint(template, _footprint_rows()),
    )
    return text + "\n\n", used


#: The trigger-footprint measurement (``bench/trigger_footprint.py``) of the source checkout.
FOOTPRINT_JSON = Path(__file__).resolve().parents[4] / "bench/results/trigger_footprint.json"

FOOTPRINT_HEADER = [
    "dataset",
    "trigger nodes",
    "graph nodes",
    "graph edges",
    "density",
    "edges changed",
    "% of the graph's edges (median)",
    "trigger nodes' degree change %",
]


def _footprint_rows(path: Path = FOOTPRINT_JSON) -> list[dict[str, Any]]:
    """Rows of ``bench/results/trigger_footprint.json`` (one per dataset and trigger size),
    or ``[]`` when the file is absent."""
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["rows"])


def _footprint(template: PageTemplate, rows: list[dict[str, Any]]) -> str:
    """The ``footprint`` fragment: how much of a graph an SBA trigger changes per dataset and
    trigger size (measured on the data, not from records), or ``""`` without rows."""
    if not rows:
        return ""
    body = [
        [
            r["dataset"],
            str(r["trigger_nodes"]),
            f"{r['mean_nodes']:.1f}",
            f"{r['mean_edges']:.1f}",
            f"{r['mean_density']:.2f}",
            f"{r['changed_edges']:.2f}",
            f"{r['changed_pct_median']:.2f}",
            f"{r['trigger_degree_change_pct']:.1f}",
        ]
        for r in rows
    ]
    return "\n\n" + template.fragment("footprint", table=markdown_table(FOOTPRINT_HEADER, body))


def _coverage(template: PageTemplate, gp_runs, gc_runs) -> tuple[str, int]:
    """How much of each requested grid has protocol-target records on issue 14's victims
    (Markdown list items; cells with only older victims counted apart), and how many COLLAB
    runs there are; ``gp_runs`` / ``gc_runs`` give a cell's ``(runs, mark)`` from its keys
    (``dataset``, ``model``, ``attack``)."""
    lines = []
    grids = [
        ("GraphProt protocol", gp_runs, GRAPHPROT_DATASETS[:-1], MODELS),
        ("GCleaner protocol", gc_runs, GCLEANER_DATASETS[:-1], ["gin"]),
    ]
    collab = 0
    for title, runs_of, datasets, models in grids:
        for attack in ATTACKS:
            for model in models:
                collab += len(runs_of(dataset="COLLAB", model=model, attack=attack)[0])
        full = partial = missing = old = 0
        for attack in ATTACKS:
            for dataset in datasets:
                for model in models:
                    runs, mark = runs_of(dataset=dataset, model=model, attack=attack)
                    n = len(runs)
                    if PRE_PROTOCOL in mark:
                        old += 1
                    elif n >= 3:
                        full += 1
                    elif n:
                        partial += 1
                    else:
                        missing += 1
        lines.append(
            template.fragment(
                "coverage",
                title=title,
                total=full + partial + missing + old,
                full=full,
                partial=partial,
                missing=missing,
                old=old,
                pre=PRE_PROTOCOL,
            )
        )
    return "\n".join(lines), collab
