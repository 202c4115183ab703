"""``graphprot``: GraphProt-R/T/TF against GTA, SBA and Motif-BA beside GraphProt Tables 1-2,
on issue 14's protocol (each dataset's protocol target class; majority-target rows in the
Sensitivity section), with the honest summaries and the clean victims' accuracy per sample
rate of :mod:`.graphprot_summary`; the paper's baselines (GNNsecurer, Fine-pruning, RS;
issue 17, records of ``experiments/defense_baselines.yaml``) beside the variants, and a
ranking of the defenses per row (:func:`~.common.winner`) on our records and the paper's,
and each baseline more than 10 points from its paper figure with a reading computed by
:mod:`.baseline_readings`."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from gnnbackdoor.experiments.pages import page
from gnnbackdoor.experiments.pages.baseline_readings import (
    BaselineCell,
    far_rows,
    far_summary,
    far_table,
)
from gnnbackdoor.experiments.pages.common import (
    RANK_ACC_DROP,
    RankRow,
    Standing,
    differs,
    num,
    provenance,
    ranking,
    resolved,
    standing,
    unique,
    where,
)
from gnnbackdoor.experiments.pages.graphprot_summary import (
    ACCURACY_TOLERANCE,
    MIN_SEEDS,
    VARIANTS,
    AccuracyRow,
    AttackRow,
    Entry,
    PaperRow,
    accuracy_rows,
    attack_rows,
    best_rate,
    collapsed,
    entries,
    implanted,
    is_protocol_victim,
    paper_rows,
    points,
    record_der,
    registered_readout,
    summarize,
)
from gnnbackdoor.experiments.pages.template import PageTemplate
from gnnbackdoor.experiments.protocol import PROTOCOL_TARGET_CLASS, is_protocol_target
from gnnbackdoor.experiments.report import fmt, markdown_table, mean_std, reference_table

DATASETS = ["AIDS", "ENZYMES", "DHFR", "NCI1", "PROTEINS", "COLLAB"]
TABLE1_MODELS = {"gcn": "GCN", "sage": "SAGE", "gat": "GAT"}
#: Victims shown under Table 2 (GCN always; the others when they have records).
TABLE2_MODELS = ["gcn", "gin", "sage", "gat"]
TABLE2_ATTACKS = {"sba": "SBA", "motif-ba": "Motif"}
#: The protocol, as resolved settings (the target class is each dataset's
#: :data:`~gnnbackdoor.experiments.protocol.PROTOCOL_TARGET_CLASS`).
PROTOCOL = {
    "data.train_fraction": 0.6667,
    "attack.trigger_size": 5,
}
#: GraphProt's baselines (Tables 1-2): registered name -> the paper's title. Their records
#: come from :data:`BASELINE_SWEEP` (``results/defense_baselines``), on the same victims.
BASELINES = {
    "gnnsecurer": "GNNsecurer",
    "fine-pruning": "Fine-pruning",
    "randomized-smoothing": "RS",
}
BASELINE_SWEEP = "experiments/defense_baselines.yaml"
#: The sweep of Tables 1-2 and of the two sensitivity sections.
SWEEP = "experiments/graphprot.yaml"
#: Marks a row whose victims were trained before issue 14 (``model.norm`` ``"none"``).
PRE_PROTOCOL = "†"
#: Sample rates of the accuracy section (issue 14 item 6).
RATES = [round(0.1 * k, 1) for k in range(1, 11)]
ACCURACY_SWEEP = "experiments/graphprot_accuracy.yaml"

#: The paper's own summary (abstract and Sec. 1), which does not say how it is averaged.
QUOTED_AVERAGES = "graphprot_quoted_averages.csv"
TARGET_ACC_DROP = 3.5
#: Points: where shielded ASR exceeds the shielded no-trigger rate by at most this much in
#: every row, the page reads what is left of the ASR as not the trigger's.
NO_TRIGGER_MARGIN = 10.0


#: Setting of the sensitivity runs whose victims were trained on random subgraphs: those
#: records sit in their own section, never in the paper's tables.
AUGMENTATION = "train.subgraph_augmentation"


#: Settings varied by the Fig. 3 ablations (experiments/graphprot_ablations.yaml), at the
#: protocol's values: records with another value sit on the ablations page, never in the
#: paper's tables.
ABLATION_SETTINGS: dict[str, Any] = {
    "defense.num_subgraphs": 5,
    "defense.sample_rate": 0.2,
    "defense.feature_fraction": 0.8,
    "attack.pattern": "erdos_renyi",
}


def _ablated(record: dict[str, Any]) -> list[str]:
    """The ablation settings whose value in ``record`` is not the protocol's."""
    return differs(record, ABLATION_SETTINGS)


def _augmented(record: dict[str, Any]) -> bool:
    return float(resolved(record, AUGMENTATION) or 0) > 0


def _target(record: dict[str, Any]) -> str:
    target = resolved(record, "attack.target_class")
    mark = "" if is_protocol_target(record) else " (majority)"
    return f"{target}{mark}"


def _model(record: dict[str, Any]) -> str:
    """The victim's name, marked when it was trained before issue 14."""
    return record["model"] + ("" if is_protocol_victim(record) else PRE_PROTOCOL)


def _ours(records: list[dict[str, Any]], augmented: bool = False) -> list[dict[str, Any]]:
    """Shielded runs of the protocol's settings (any target class), not ablated."""
    return [
        r
        for r in where(records, PROTOCOL, task="graph", defense=tuple(VARIANTS))
        if _augmented(r) == augmented and not _ablated(r)
    ]


def _stat(runs, metric) -> tuple[float, float, int]:
    values = [r["metrics"].get(metric, float("nan")) for r in runs]
    mean, std = mean_std(values)
    return mean * 100, std * 100, len([v for v in values if not math.isnan(v)])


def _per_seed(by_defense: dict[str, list]) -> list[dict[str, Any]]:
    """One record per seed for the figures measured before the shield (identical in the
    three variants' records of a seed)."""
    seen: dict[int, dict] = {}
    for runs in by_defense.values():
        for r in runs:
            seen.setdefault(r["seed"], r)
    return [seen[s] for s in sorted(seen)]


def _text(stat: tuple[float, float, int]) -> str:
    mean, std, n = stat
    return "—" if n == 0 else f"{fmt(mean / 100, std / 100, 100, 1)} ({n})"


def _paper(rows, **keys) -> tuple[float, float]:
    for row in rows:
        if all(row.get(k) == v for k, v in keys.items()):
            return float(row["asr"]), float(row["acc"])
    return float("nan"), float("nan")


def _dataset_label(dataset: str, row: AttackRow | None) -> str:
    return dataset + (PRE_PROTOCOL if row is not None and not row.protocol_victim else "")


def _queries_per_graph(runs: list[dict[str, Any]]) -> str:
    """Subgraphs (or copies) sent to the model per input graph, mean over runs; ``—`` for
    runs that query nothing (a repair)."""
    queried = [
        r["metrics"]["queried_graphs"]
        / (r["metrics"]["num_eval_graphs"] + r["metrics"].get("num_triggered", 0))
        for r in runs
        if "queried_graphs" in r["metrics"] and r["metrics"].get("num_eval_graphs")
    ]
    return f"{sum(queried) / len(queried):.1f}" if queried else "—"


def _block(index, paper_rows_, model, attack, paper_keys, baselines=None) -> list[list[str]]:
    """Rows (backdoored, clean, R, T, TF, then the baselines) × datasets for one (model,
    attack); ``baselines``: :func:`baseline_runs`. The undefended rows come from the
    variants' records, else (no variant measured on issue 14's victims) the baselines'."""
    body = []
    baselines = baselines or {}
    for dataset in DATASETS:
        row = index.get((model, attack, dataset))
        by_defense = row.by_variant if row is not None else {}
        by_baseline = baselines.get((model, attack, dataset), {})
        label = _dataset_label(dataset, row)
        seeds = _per_seed(by_defense)
        if not seeds:
            seeds = _per_seed(by_baseline)
        bd_asr, bd_acc = _stat(seeds, "asr"), _stat(seeds, "backdoored_acc")
        cl_asr, cl_acc = _stat(seeds, "clean_model_asr"), _stat(seeds, "clean_acc")
        p_bd = _paper(paper_rows_, defense="Backdoored Model", dataset=dataset, **paper_keys)
        p_cl = _paper(paper_rows_, defense="Clean Model", dataset=dataset, **paper_keys)
        for title, asr, acc, paper in (
            ("Backdoored model", bd_asr, bd_acc, p_bd),
            ("Clean model", cl_asr, cl_acc, p_cl),
        ):
            body.append(
                [label, title, _text(asr), num(paper[0], 1), _text(acc), num(paper[1], 1), "", ""]
            )
        shields = [(title, by_defense.get(d, []), label) for d, title in VARIANTS.items()]
        shields += [(title, by_baseline.get(d, []), dataset) for d, title in BASELINES.items()]
        for title, runs, shown_label in shields:
            asr, acc = _stat(runs, "defended_asr"), _stat(runs, "defended_acc")
            p_def = _paper(paper_rows_, defense=title, dataset=dataset, **paper_keys)
            per_graph = _queries_per_graph(runs)
            removed = _stat(runs, "filter_removed_node_fraction")
            body.append(
                [
                    shown_label,
                    title,
                    _text(asr),
                    num(p_def[0], 1),
                    _text(acc),
                    num(p_def[1], 1),
                    per_graph,
                    num(removed[0], 1) if removed[2] else "—",
                ]
            )
    return body


HEADER = [
    "dataset",
    "model / defense",
    "ASR (ours)",
    "ASR (paper)",
    "ACC (ours)",
    "ACC (paper)",
    "queries/graph",
    "removed nodes %",
]


def _quoted() -> dict[str, float]:
    """The paper's quoted averages (``asr_reduction``, ``accuracy_reduction``, in %)."""
    return {r["quantity"]: float(r["value"]) for r in reference_table(QUOTED_AVERAGES)}


def _paper_tables() -> dict[tuple[str, str], PaperRow]:
    """The paper's rows by (block, dataset): Table 1 blocks are its models (``"GCN"``),
    Table 2 blocks its attacks (``"SBA"``, ``"Motif"``)."""
    rows = paper_rows(reference_table("graphprot_table1_models_gta.csv"), "model")
    rows += paper_rows(reference_table("graphprot_table2_attacks.csv"), "attack")
    return {(r.block, r.dataset): r for r in rows}


def _paper_block(model: str, attack: str) -> str | None:
    """The paper block our (model, attack) row sits beside: Table 1's model under GTA,
    Table 2's attack (its victim is not named) otherwise."""
    if attack == "gta":
        return TABLE1_MODELS.get(model)
    return TABLE2_ATTACKS.get(attack)


def baseline_runs(records: list[dict[str, Any]]) -> dict[tuple, dict[str, list[dict]]]:
    """GraphProt's baselines' protocol records by ``(model, attack, dataset)`` and defense:
    the protocol's settings and target class, victims as issue 14 builds them, neither
    augmented nor ablated (the same selection as the variants' Tables 1-2 rows)."""
    out: dict[tuple, dict[str, list[dict]]] = {}
    for r in where(records, PROTOCOL, task="graph", defense=tuple(BASELINES)):
        if not r.get("attack") or _augmented(r) or _ablated(r):
            continue
        if not (is_protocol_target(r) and is_protocol_victim(r)):
            continue
        key = (r["model"], r["attack"], r["dataset"])
        out.setdefault(key, {}).setdefault(r["defense"], []).append(r)
    return out


#: Every defense of Tables 1-2: registered name -> the paper's title.
DEFENSES = {**VARIANTS, **BASELINES}


def rank_status(by_defense: dict[str, list[dict[str, Any]]]) -> str | None:
    """``None`` when every defense of a row has at least :data:`MIN_SEEDS` runs and every
    run's backdoor implanted into a model that did not collapse; else why not."""
    runs = [r for rs in by_defense.values() for r in rs]
    short = [DEFENSES.get(d, d) for d, rs in by_defense.items() if len(rs) < MIN_SEEDS]
    if short:
        return f"fewer than {MIN_SEEDS} seeds ({', '.join(short)})"
    down = sum(collapsed(r) for r in runs)
    if down:
        return f"backdoored model collapsed in {down} of {len(runs)} runs"
    missed = sum(not implanted(r) for r in runs)
    if missed:
        return f"not implanted in {missed} of {len(runs)} runs"
    return None


def ranking_rows(
    index: dict[tuple, AttackRow], baselines: dict[tuple, dict[str, list[dict]]]
) -> list[RankRow]:
    """One :class:`~.common.RankRow` per (model, attack, dataset) of Tables 1-2 (Table 1's
    models under GTA, GCN under Table 2's attacks): our standings from the variants' runs
    on issue 14's victims (rows on older victims only count as unmeasured) and the
    baselines' runs; the paper's from its table (each defense's accuracy against its
    *Backdoored Model* row)."""
    table1 = reference_table("graphprot_table1_models_gta.csv")
    table2 = reference_table("graphprot_table2_attacks.csv")
    wanted = [(m, "gta") for m in TABLE1_MODELS] + [("gcn", a) for a in TABLE2_ATTACKS]
    out = []
    for model, attack in wanted:
        if attack == "gta":
            rows, keys = table1, {"model": TABLE1_MODELS[model]}
        else:
            rows, keys = table2, {"attack": TABLE2_ATTACKS[attack]}
        for dataset in DATASETS:
            row = index.get((model, attack, dataset))
            by_defense: dict[str, list[dict]] = {}
            if row is not None and row.protocol_victim:
                by_defense.update({d: rs for d, rs in row.by_variant.items() if rs})
            by_defense.update(baselines.get((model, attack, dataset), {}))
            ours = [standing(DEFENSES[d], by_defense.get(d, [])) for d in DEFENSES]
            backdoored_acc = _paper(rows, defense="Backdoored Model", dataset=dataset, **keys)[1]
            paper = []
            for title in DEFENSES.values():
                asr, acc = _paper(rows, defense=title, dataset=dataset, **keys)
                if not math.isnan(asr):
                    paper.append(Standing(title, asr, backdoored_acc - acc))
            out.append(
                RankRow(
                    [dataset, model, attack],
                    list(DEFENSES.values()),
                    [s for s in ours if s is not None],
                    paper,
                    rank_status(by_defense),
                )
            )
    return out


def _ranking(template: PageTemplate, rows: list[RankRow]) -> str:
    table, (agree, compared, total) = ranking(rows, ["dataset", "model", "attack"])
    return template.fragment(
        "ranking",
        limit=f"{RANK_ACC_DROP:g}",
        min_seeds=MIN_SEEDS,
        table=table,
        agree=agree,
        compared=compared,
        rows=total,
    )


@dataclass(frozen=True)
class Block:
    """One table of Tables 1-2 as the page shows it: our (model, attack), the paper's rows
    beside it (``rows``, matched further on ``keys`` by :func:`_paper`) and its heading."""

    model: str
    attack: str
    rows: list[dict[str, str]]
    keys: dict[str, str]
    title: str


def shown_blocks(index: dict[tuple, AttackRow]) -> list[Block]:
    """The page's tables in order: Table 1's models under GTA, then per Table 2 attack GCN
    and every other model of :data:`TABLE2_MODELS` the variants measured."""
    table1 = reference_table("graphprot_table1_models_gta.csv")
    table2 = reference_table("graphprot_table2_attacks.csv")
    out = []
    for model, title in TABLE1_MODELS.items():
        rows = [r for r in table1 if r["model"] == title]
        out.append(Block(model, "gta", rows, {"model": title}, title))
    for attack, title in TABLE2_ATTACKS.items():
        rows = [r for r in table2 if r["attack"] == title]
        for model in TABLE2_MODELS:
            if model != "gcn" and not any(key[:2] == (model, attack) for key in index):
                continue
            out.append(Block(model, attack, rows, {"attack": title}, f"{title}, {model.upper()}"))
    return out


def far_cells(
    index: dict[tuple, AttackRow], baselines: dict[tuple, dict[str, list[dict]]]
) -> list[BaselineCell]:
    """One :class:`~.baseline_readings.BaselineCell` per baseline row of Tables 1-2 (the
    runs :func:`baseline_runs` gives the row, the paper's figures :func:`_block` shows beside
    it and its *Backdoored Model* row's)."""
    out = []
    for block in shown_blocks(index):
        for dataset in DATASETS:
            by_baseline = baselines.get((block.model, block.attack, dataset), {})
            bd = _paper(block.rows, defense="Backdoored Model", dataset=dataset, **block.keys)
            for name, title in BASELINES.items():
                after = _paper(block.rows, defense=title, dataset=dataset, **block.keys)
                out.append(
                    BaselineCell(
                        (dataset, block.model, block.attack),
                        name,
                        title,
                        by_baseline.get(name, []),
                        after[0],
                        after[1],
                        bd[0],
                        bd[1],
                    )
                )
    return out


def _far(template: PageTemplate, cells: list[BaselineCell]) -> str:
    rows = far_rows(cells)
    return template.fragment(
        "far",
        table=far_table(rows) or template.fragment("far_none"),
        **far_summary(rows),
    )


def _paper_same_rows(rows: list[AttackRow], paper: dict) -> list[Entry]:
    """The paper's entries beside our averaged ones (each averaged row's paper row, where
    the paper's attack implanted too; a paper row beside several of ours counts for each)."""
    out = []
    for row in rows:
        if row.status() is not None:
            continue
        found = paper.get((_paper_block(row.model, row.attack), row.dataset))
        if found is None or not found.implanted:
            continue
        wanted = {VARIANTS[d] for d, runs in row.by_variant.items() if len(runs) >= MIN_SEEDS}
        out += [e for e in found.entries() if e.variant in wanted]
    return out


SUMMARY_HEADER = [
    "variant",
    "source",
    "rows",
    "ASR reduction %",
    "ASR reduction (points)",
    "ACC drop vs clean",
    "ACC drop vs backdoored",
    "DER %",
]


def _summary_line(variant: str, source: str, summary, marked: bool = False) -> list:
    rows = str(summary.rows)
    if marked and summary.pre_protocol:
        rows += f" ({summary.pre_protocol} {PRE_PROTOCOL})"
    return [
        variant,
        source,
        rows,
        num(summary.relative, 1),
        num(summary.absolute, 1),
        num(summary.drop_clean, 2),
        num(summary.drop_backdoored, 2),
        num(summary.der, 1),
    ]


def _summary_table(sources: list[tuple[str, list[Entry], bool]]) -> str:
    """Per variant and overall, one line per ``(source, entries, mark pre-protocol)``."""
    lines = []
    for variant in [*VARIANTS.values(), None]:
        for source, items, marked in sources:
            chosen = [e for e in items if variant is None or e.variant == variant]
            lines.append(_summary_line(variant or "all", source, summarize(chosen), marked))
    return markdown_table(SUMMARY_HEADER, lines)


ROW_HEADER = [
    "dataset",
    "model",
    "attack",
    "variant",
    "seeds",
    "ASR backdoored",
    "ASR clean model",
    "ASR shielded",
    "no-trigger rate shielded (floor)",
    "DER %",
    "robust ACC shielded",
    "ACC clean",
    "ACC backdoored",
    "ACC shielded",
    "paper ASR backdoored → shielded",
]


def _sorted_rows(rows: list[AttackRow]) -> list[AttackRow]:
    order = {d: i for i, d in enumerate(DATASETS)}
    return sorted(rows, key=lambda r: (order.get(r.dataset, 99), r.dataset, r.model, r.attack))


def _row_table(rows: list[AttackRow], paper: dict | None) -> str:
    """Each averaged row and variant: the shielded ASR beside its floor (the no-trigger
    rate), DER, robust accuracy and the clean model's ASR (means over seeds, points)."""
    body = []
    for row in _sorted_rows(rows):
        if row.status() is not None:
            continue
        seeds = row.seeds
        found = paper.get((_paper_block(row.model, row.attack), row.dataset)) if paper else None
        for defense, title in VARIANTS.items():
            runs = row.by_variant.get(defense, [])
            if len(runs) < MIN_SEEDS:
                continue
            theirs = "—"
            if found is not None and title in found.shielded:
                theirs = f"{found.backdoored_asr:.1f} → {found.shielded[title][0]:.1f}"
            body.append(
                [
                    _dataset_label(row.dataset, row),
                    row.model,
                    row.attack,
                    title,
                    len(runs),
                    num(points(seeds, "asr"), 1),
                    num(points(seeds, "clean_model_asr"), 1),
                    num(points(runs, "defended_asr"), 1),
                    num(points(runs, "defended_target_no_trigger"), 1),
                    num(mean_std([record_der(r) for r in runs])[0] * 100, 1),
                    num(points(runs, "defended_robust_acc"), 1),
                    num(points(seeds, "clean_acc"), 1),
                    num(points(seeds, "backdoored_acc"), 1),
                    num(points(runs, "defended_acc"), 1),
                    theirs,
                ]
            )
    return markdown_table(ROW_HEADER, body) if body else ""


def _excluded_table(rows: list[AttackRow]) -> str:
    """The rows not averaged, each with its reason."""
    body = []
    for row in _sorted_rows(rows):
        why = row.status()
        if why is None:
            continue
        seeds = row.seeds
        body.append(
            [
                _dataset_label(row.dataset, row),
                row.model,
                row.attack,
                why,
                num(points(seeds, "asr"), 1),
                num(points(seeds, "clean_model_asr"), 1),
                num(points(seeds, "backdoored_acc"), 1),
                num(points(seeds, "backdoored_majority_share"), 1),
                num(points(seeds, "clean_majority_share"), 1),
            ]
        )
    header = [
        "dataset",
        "model",
        "attack",
        "not averaged: why",
        "ASR backdoored",
        "ASR clean model",
        "ACC backdoored",
        "majority share of its predictions",
        "clean victim's majority share",
    ]
    return markdown_table(header, body) if body else ""


def _summary_section(template: PageTemplate, rows: list[AttackRow]) -> dict[str, str]:
    """Template values of the main summary: the table (ours, the paper on the same rows,
    the paper on all its implanted rows), the per-row and the excluded tables, the target
    verdicts."""
    paper = _paper_tables()
    ours = entries(rows)
    same = _paper_same_rows(rows, paper)
    every = [e for r in paper.values() if r.implanted for e in r.entries()]
    overall, paper_same, paper_all = summarize(ours), summarize(same), summarize(every)
    quoted = _quoted()
    met_asr = not math.isnan(overall.relative) and overall.relative >= quoted["asr_reduction"]
    met_acc = not math.isnan(overall.drop_clean) and overall.drop_clean <= TARGET_ACC_DROP
    averaged = [r for r in rows if r.status() is None]
    row_table = _row_table(rows, paper)
    excluded = _excluded_table(rows)
    return {
        "quoted_asr": f"{quoted['asr_reduction']:g}",
        "quoted_acc": f"{quoted['accuracy_reduction']:g}",
        "paper_rows": str(paper_all.rows),
        "paper_blocks": str(len(paper)),
        "paper_implanted": str(sum(r.implanted for r in paper.values())),
        "paper_all_asr": num(paper_all.relative, 1),
        "paper_all_acc": num(paper_all.drop_clean, 2),
        "averaged_rows": str(len(averaged)),
        "all_rows": str(len(rows)),
        "summary_table": _summary_table(
            [("ours", ours, True), ("paper, same rows", same, False), ("paper, all", every, False)]
        ),
        "asr_met": "met" if met_asr else "not met",
        "ours_asr": num(overall.relative, 1),
        "target_acc": f"{TARGET_ACC_DROP}",
        "acc_met": "met" if met_acc else "not met",
        "ours_acc": num(overall.drop_clean, 2),
        "paper_asr": num(paper_same.relative, 1),
        "paper_acc": num(paper_same.drop_clean, 2),
        "row_table": row_table or template.fragment("no_rows"),
        "excluded_table": excluded or template.fragment("no_excluded"),
    }


def _pre_protocol(template: PageTemplate, rows: int, total: int) -> str:
    """The note on rows measured on victims before issue 14 (ending in a blank line; empty
    without such rows)."""
    if not rows:
        return ""
    return template.fragment("pre_protocol", rows=rows, all=total) + "\n\n"


def _targets_text() -> str:
    return ", ".join(f"{d} {PROTOCOL_TARGET_CLASS[d]}" for d in DATASETS)


@page("graphprot", inputs=["results/graphprot"], optional=["results/defense_baselines"])
def render(records: list[dict[str, Any]], template: PageTemplate | None = None) -> str:
    """GraphProt-R/T/TF against GTA, SBA and Motif-BA beside GraphProt Tables 1-2."""
    template = template or PageTemplate.load("graphprot")
    selected = _ours(records)
    main_rows = attack_rows(r for r in selected if is_protocol_target(r))
    majority_rows = attack_rows(r for r in selected if not is_protocol_target(r))
    index = {(r.model, r.attack, r.dataset): r for r in main_rows}
    baselines = baseline_runs(records)
    table1_blocks, table2_blocks = [], []
    for block in shown_blocks(index):
        body = _block(index, block.rows, block.model, block.attack, block.keys, baselines)
        tables = table1_blocks if block.attack == "gta" else table2_blocks
        tables.append(f"### {block.title}\n\n{markdown_table(HEADER, body)}")

    sensitivity, sensitivity_used = _sensitivity(template, majority_rows)
    augmented, augmented_used = _augmented_victims(template, records)
    diagnosis, diagnosis_used = _diagnosis(template, records)
    accuracy, accuracy_used = _accuracy(template, records)
    main_used = [r for row in main_rows for runs in row.by_variant.values() for r in runs]
    baseline_used = [r for by in baselines.values() for runs in by.values() for r in runs]
    used = unique(
        main_used
        + baseline_used
        + sensitivity_used
        + augmented_used
        + diagnosis_used
        + accuracy_used
    )
    pre = sum(not row.protocol_victim for row in main_rows)
    return template.render(
        targets=_targets_text(),
        pre_protocol=_pre_protocol(template, pre, len(main_rows)),
        table1_blocks="\n\n".join(table1_blocks),
        table2_blocks="\n\n".join(table2_blocks),
        **_summary_section(template, main_rows),
        diagnosis=diagnosis,
        training=_training(template, main_used),
        coverage=_coverage(template, index, baselines),
        ranking=_ranking(template, ranking_rows(index, baselines)),
        far=_far(template, far_cells(index, baselines)),
        accuracy=accuracy,
        sensitivity=sensitivity,
        augmented=augmented,
        **provenance(used),
    )


def _training(template: PageTemplate, records) -> str:
    """Each dataset's epoch cap and patience, from the records' resolved ``train``."""
    caps: dict[str, set] = defaultdict(set)
    for r in records:
        train = (r.get("config") or {}).get("train") or {}
        epochs, patience = train.get("max_epochs", "?"), train.get("patience", "?")
        mark = "" if is_protocol_victim(r) else f" {PRE_PROTOCOL}"
        caps[r["dataset"]].add(f"≤ {epochs} (patience {patience}){mark}")
    if not caps:
        return ""
    text = "; ".join(f"{d}: {', '.join(sorted(c))}" for d, c in sorted(caps.items()))
    return template.fragment("training", caps=text)


def _coverage(
    template: PageTemplate, index: dict[tuple, AttackRow], baselines: dict | None = None
) -> str:
    wanted = [(m, "gta", d) for m in TABLE1_MODELS for d in DATASETS]
    wanted += [("gcn", a, d) for a in TABLE2_ATTACKS for d in DATASETS]
    baselines = baselines or {}
    full = sum(
        all(len(baselines.get(key, {}).get(b, [])) >= MIN_SEEDS for b in BASELINES)
        for key in wanted
    )
    missing, partial = [], []
    for key in wanted:
        row = index.get(key)
        by_defense = row.by_variant if row is not None else {}
        counts = [len(by_defense.get(v, [])) for v in VARIANTS]
        label = f"{key[0]}/{key[1]}/{key[2]}"
        if not any(counts):
            missing.append(label)
        elif min(counts) < MIN_SEEDS:
            partial.append(f"{label} ({'/'.join(map(str, counts))} seeds R/T/TF)")
    old = sum(1 for key in wanted if key in index and not index[key].protocol_victim)
    lines = [
        template.fragment(
            "coverage", measured=len(wanted) - len(missing), wanted=len(wanted), old=old
        )
    ]
    if partial:
        lines.append(template.fragment("coverage_partial", rows=", ".join(partial)))
    if missing:
        lines.append(template.fragment("coverage_missing", rows=", ".join(missing)))
    lines.append(
        template.fragment(
            "coverage_baselines",
            full=full,
            wanted=len(wanted),
            min_seeds=MIN_SEEDS,
            sweep=BASELINE_SWEEP,
        )
    )
    return "\n".join(lines)


def _sensitivity(template: PageTemplate, rows: list[AttackRow]) -> tuple[str, list[dict[str, Any]]]:
    """The majority-target rows (class 1 on AIDS, DHFR, NCI1) with the main summary's
    definitions: the section's Markdown (ending in a blank line; without such rows, the
    heading and how to measure them) and the records it shows."""
    if not rows:
        return template.fragment("sensitivity_empty", sweep=SWEEP) + "\n\n", []
    used = [r for row in rows for runs in row.by_variant.values() for r in runs]
    ours = entries(rows)
    text = template.fragment(
        "sensitivity",
        datasets=", ".join(
            sorted({f"{row.dataset} (class {row.target})" for row in rows}, key=str)
        ),
        summary_table=_summary_table([("ours", ours, True)]),
        row_table=_row_table(rows, None) or template.fragment("no_rows"),
        excluded_table=_excluded_table(rows) or template.fragment("no_excluded"),
    )
    return text + "\n\n", used


def _accuracy(template: PageTemplate, records) -> tuple[str, list[dict[str, Any]]]:
    """Issue 14 item 6: clean victims behind GraphProt-R per sample rate p, beside the
    unshielded victim and the paper's Table 1 clean accuracy; the best operating point per
    (dataset, model) by :func:`~.graphprot_summary.best_rate`. The section's Markdown and
    the records it shows."""
    selected = [
        r
        for r in where(records, {"data.train_fraction": 0.6667}, task="graph")
        if not _augmented(r) and same_protocol_shield(r)
    ]
    rows = accuracy_rows(selected)
    command = template.fragment("accuracy_command", sweep=ACCURACY_SWEEP)
    if not rows:
        empty = template.fragment(
            "accuracy",
            tolerance=f"{ACCURACY_TOLERANCE:g}",
            tables=template.fragment("accuracy_empty"),
            command=command,
            findings="",
        )
        return empty, []
    table1 = reference_table("graphprot_table1_models_gta.csv")
    by_key = {(r.dataset, r.model): r for r in rows}
    variants = {r.model for r in rows if r.readout is not None}
    models = [m for m in TABLE1_MODELS if any(k[1] == m for k in by_key)]
    models += sorted({k[1] for k in by_key} - set(models))
    tables, at_protocol, reachable, measured = [], 0, 0, 0
    for model in models:
        # a readout variant (victim_label "gin (mean readout)") is measured on some datasets
        # only: its table lists those, and its rows stay out of the findings' counts
        registered = model not in variants
        header = ["dataset", "seeds", "ACC no shield", *(f"p = {p:g}" for p in RATES)]
        header += ["best p", "paper ACC (Table 1, clean)"]
        body = []
        for dataset in DATASETS:
            paper = _paper(
                [t for t in table1 if t["model"] == TABLE1_MODELS.get(model)],
                defense="Clean Model",
                dataset=dataset,
            )[1]
            row = by_key.get((dataset, model))
            if row is None:
                if registered:
                    missing = template.fragment("accuracy_missing")
                    body.append([dataset, 0, missing, *[""] * len(RATES), "", num(paper, 1)])
                continue
            clean = row.clean()
            shielded = {p: row.shielded(p) for p in RATES}
            best, within = best_rate(clean[0], {p: v[0] for p, v in shielded.items() if v[2]})
            p_protocol = shielded[0.2]
            if registered:
                measured += 1
                reachable += within
                at_protocol += bool(
                    p_protocol[2] and p_protocol[0] >= clean[0] - ACCURACY_TOLERANCE - 1e-9
                )
            if best is None:
                best_text = "—"
            elif within:
                best_text = f"{best:g}"
            else:
                best_text = f"{best:g} (none within {ACCURACY_TOLERANCE:g})"
            body.append(
                [
                    dataset + ("" if row.protocol_victim else PRE_PROTOCOL),
                    clean[2],
                    f"{fmt(clean[0] / 100, clean[1] / 100, 100, 1)}",
                    *(
                        fmt(v[0] / 100, v[1] / 100, 100, 1) if v[2] else "—"
                        for v in shielded.values()
                    ),
                    best_text,
                    num(paper, 1),
                ]
            )
        tables.append(f"### {model.upper()}\n\n{markdown_table(header, body)}")
    findings = "\n\n" + template.fragment(
        "accuracy_findings",
        measured=measured,
        reachable=reachable,
        at_protocol=at_protocol,
        tolerance=f"{ACCURACY_TOLERANCE:g}",
    )
    findings += _readout_comparison(template, rows, by_key)
    used = [r for row in rows for runs in row.by_rate.values() for r in runs]
    text = template.fragment(
        "accuracy",
        tolerance=f"{ACCURACY_TOLERANCE:g}",
        tables="\n\n".join(tables),
        command=command,
        findings=findings,
    )
    return text, used


def _readout_comparison(
    template: PageTemplate, rows: list[AccuracyRow], by_key: dict[tuple, AccuracyRow]
) -> str:
    """Where a model was measured with a readout other than its registered one (an
    :class:`~.graphprot_summary.AccuracyRow` with ``readout`` set), per dataset measured
    both ways: each victim's unshielded accuracy, its accuracy at the paper's p = 0.2 and
    the drop, in points. Empty without such victims."""
    body, counts = [], {"smaller": 0, "similar": 0, "larger": 0}
    for row in sorted(rows, key=lambda r: (r.model, r.dataset)):
        base = by_key.get((row.dataset, row.base_model))
        if row.readout is None or base is None:
            continue
        cells, drops = [], []
        for victim in (base, row):
            clean, shielded = victim.clean(), victim.shielded(0.2)
            drop = clean[0] - shielded[0] if shielded[2] else math.nan
            drops.append(drop)
            cells += [
                fmt(clean[0] / 100, clean[1] / 100, 100, 1),
                fmt(shielded[0] / 100, shielded[1] / 100, 100, 1) if shielded[2] else "—",
                num(drop, 1),
            ]
        model = row.base_model
        body.append([row.dataset, model.upper(), registered_readout(model), row.readout, *cells])
        gap = drops[1] - drops[0]  # the other readout's drop minus the registered one's
        if not math.isnan(gap):
            side = "smaller" if gap < -ACCURACY_TOLERANCE else "larger"
            counts[side if abs(gap) > ACCURACY_TOLERANCE else "similar"] += 1
    if not body:
        return ""
    header = ["dataset", "model", "registered readout", "other readout"]
    for name in ("registered", "other"):
        header += [f"ACC no shield ({name})", f"ACC p = 0.2 ({name})", f"drop ({name})"]
    return "\n\n" + template.fragment(
        "accuracy_readout",
        table=markdown_table(header, body),
        compared=sum(counts.values()),
        tolerance=f"{ACCURACY_TOLERANCE:g}",
        **counts,
    )


def same_protocol_shield(record: dict[str, Any]) -> bool:
    """Whether the shield's other settings are the protocol's (N = 5, r = 0.8): the
    accuracy section varies p only."""
    settings = {k: v for k, v in ABLATION_SETTINGS.items() if k.startswith("defense.")}
    return set(differs(record, settings)) <= {"defense.sample_rate"}


def _variant_sorted(groups: dict[tuple, list]) -> list[tuple[tuple, list]]:
    """Items of ``{(..., defense): runs}`` sorted by the key's other parts, then with the
    variants in :data:`VARIANTS` order."""
    order = list(VARIANTS)
    return sorted(groups.items(), key=lambda kv: (*kv[0][:-1], order.index(kv[0][-1])))


AUGMENTED_COLUMNS = [
    ("clean_acc", "ACC clean model"),
    ("backdoored_acc", "ACC backdoored"),
    ("subgraph_acc", "ACC per subgraph"),
    ("defended_acc", "ACC shielded"),
    ("clean_model_asr", "ASR clean model"),
    ("asr", "ASR backdoored"),
    ("defended_asr", "ASR shielded"),
    ("defended_target_no_trigger", "no-trigger rate shielded"),
]


def _augmented_victims(template: PageTemplate, records) -> tuple[str, list[dict[str, Any]]]:
    """The same runs with victims trained on random subgraphs half the time, beside the
    plain victims of the same rows: can a victim that has seen such subgraphs classify
    them? The section's Markdown (ending in a blank line; without such records, the heading
    and how to measure them) and the records it shows."""
    augmented = _ours(records, augmented=True)
    if not augmented:
        return template.fragment("augmented_empty", sweep=SWEEP) + "\n\n", []
    rows = {(r["dataset"], _model(r), r["attack"], _target(r)) for r in augmented}
    plain = _ours(records)
    groups: dict[tuple, list] = defaultdict(list)
    for r in augmented + plain:
        row = (r["dataset"], _model(r), r["attack"], _target(r))
        if row in rows:
            share = f"{float(resolved(r, AUGMENTATION) or 0):g}"
            groups[(*row, share, r["defense"])].append(r)
    body = []
    for (dataset, model, attack, target, share, defense), runs in _variant_sorted(groups):
        body.append(
            [
                dataset,
                model,
                attack,
                target,
                share,
                VARIANTS[defense],
                *(_text(_stat(runs, key)) for key, _ in AUGMENTED_COLUMNS),
            ]
        )
    table = markdown_table(
        [
            "dataset",
            "model",
            "attack",
            "target",
            "augmentation",
            "variant",
            *(title for _, title in AUGMENTED_COLUMNS),
        ],
        body,
    )
    used = [r for runs in groups.values() for r in runs]
    return template.fragment("augmented", table=table) + "\n\n", used


DIAGNOSIS_COLUMNS = [
    ("backdoored_acc", "ACC backdoored"),
    ("subgraph_acc", "ACC per subgraph"),
    ("defended_acc", "ACC shielded"),
    ("asr", "ASR backdoored"),
    ("subgraph_asr", "ASR per subgraph"),
    ("defended_asr", "ASR shielded"),
    ("subgraph_target_no_trigger", "no-trigger rate per subgraph"),
    ("defended_target_no_trigger", "no-trigger rate shielded"),
    ("trigger_filter_trigger_removed", "trigger nodes removed"),
    ("trigger_filter_other_removed", "other nodes removed"),
    ("trigger_subgraph_two_trigger", "subgraphs with ≥ 2 trigger nodes"),
    ("trigger_subgraph_full_trigger", "subgraphs with the full trigger"),
]


def _diagnosis(template: PageTemplate, records) -> tuple[str, list[dict[str, Any]]]:
    """Per-subgraph vote rates and trigger coverage, from records that carry them: the
    section's Markdown (ending in a blank line; empty without such records) and records."""
    rows = [r for r in _ours(records) if "subgraph_acc" in (r.get("metrics") or {})]
    if not rows:
        return "", []
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], _model(r), r["attack"], _target(r), r["defense"])].append(r)
    body = []
    for (dataset, model, attack, target, defense), runs in _variant_sorted(groups):
        mean_nodes = _stat(runs, "trigger_subgraph_trigger_nodes")
        body.append(
            [
                dataset,
                model,
                attack,
                target,
                VARIANTS[defense],
                *(_text(_stat(runs, key)) for key, _ in DIAGNOSIS_COLUMNS),
                fmt(mean_nodes[0] / 100, mean_nodes[1] / 100) if mean_nodes[2] else "—",
            ]
        )
    table = markdown_table(
        [
            "dataset",
            "model",
            "attack",
            "target",
            "variant",
            *(title for _, title in DIAGNOSIS_COLUMNS),
            "trigger nodes per subgraph",
        ],
        body,
    )
    findings = "\n\n".join(_findings(template, groups))
    return template.fragment("diagnosis", table=table, findings=findings) + "\n\n", rows


def _group_mean(runs, metric) -> float:
    return _stat(runs, metric)[0]


def _findings(template: PageTemplate, groups: dict[tuple, list]) -> list[str]:
    """What the SBA and Motif-BA diagnosis rows show, worded by the template from the
    numbers; GTA rows stay in the table only (its trigger is being reworked)."""
    lines = []
    groups = {key: runs for key, runs in groups.items() if key[2] in TABLE2_ATTACKS}
    removal = [
        (
            _group_mean(runs, "trigger_filter_trigger_removed"),
            _group_mean(runs, "trigger_filter_other_removed"),
        )
        for runs in groups.values()
    ]
    removal = [(t, o) for t, o in removal if not (math.isnan(t) or math.isnan(o))]
    if removal:
        lines.append(
            template.fragment(
                "filter",
                fewer=sum(t < o for t, o in removal),
                rows=len(removal),
                trigger_low=f"{min(t for t, _ in removal):.1f}",
                trigger_high=f"{max(t for t, _ in removal):.1f}",
                other_low=f"{min(o for _, o in removal):.1f}",
                other_high=f"{max(o for _, o in removal):.1f}",
            )
        )
    structure = [
        (
            _group_mean(runs, "trigger_subgraph_two_trigger"),
            _group_mean(runs, "trigger_subgraph_full_trigger"),
        )
        for (_, _, _, _, defense), runs in groups.items()
        if defense != "graphprot-r"
    ]
    structure = [(t, f) for t, f in structure if not (math.isnan(t) or math.isnan(f))]
    if structure:
        lines.append(
            template.fragment(
                "sampling",
                two=f"{max(t for t, _ in structure):.1f}",
                full=f"{max(f for _, f in structure):.1f}",
            )
        )
    near = []
    for runs in groups.values():
        asr = _group_mean(runs, "defended_asr")
        base = _group_mean(runs, "defended_target_no_trigger")
        if not (math.isnan(asr) or math.isnan(base)):
            near.append(asr - base)
    if near:
        verdict = template.fragment(
            "victims_no_trigger" if max(near) <= NO_TRIGGER_MARGIN else "victims_trigger"
        )
        lines.append(
            template.fragment(
                "victims",
                low=f"{min(near):+.1f}",
                high=f"{max(near):+.1f}",
                rows=len(near),
                verdict=verdict,
            )
        )
    return lines
