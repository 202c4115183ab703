"""``clean_models``: clean accuracy of every victim beside the papers' clean-model figures,
and issue 14 item 1's victim targets judged on the graph victims built as issue 14 builds
them (``model.norm`` batch norm; older graph victims are shown marked † and not judged)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gnnbackdoor.experiments.pages import page
from gnnbackdoor.experiments.pages.common import (
    cell,
    matches,
    num,
    paper_value,
    provenance,
    where,
)
from gnnbackdoor.experiments.pages.template import PageTemplate
from gnnbackdoor.experiments.protocol import PROTOCOL_VICTIM
from gnnbackdoor.experiments.report import markdown_table, paper_lookup, reference_table

LINK_DATASETS = ["Cora", "CiteSeer", "Cora_ML_LCC"]
LINK_MODELS = ["gae", "vgae", "gic", "arga", "arvga"]
GRAPH_DATASETS = ["AIDS", "PROTEINS", "NCI1", "ENZYMES", "DHFR", "COLLAB"]
GRAPH_MODELS = ["gcn", "gat", "gin", "sage"]

#: The protocols this page shows, as resolved settings: link victims at Link-Backdoor's
#: shared learning rate and at the ARGA/GIC papers' one; graph victims on the one-hot node
#: labels alone and with ENZYMES's continuous attributes appended.
LINK_LR = {"train.lr": 0.01}
SLOW_LR = {"train.lr": 0.001}
LABELS_ONLY = {"data.node_attributes": False, "data.cv_folds": (0, None)}
WITH_ATTRIBUTES = {"data.node_attributes": True, "data.cv_folds": (0, None)}
#: Cross-validated victims (``data.cv_folds`` 10): a section of their own, never in the
#: 3-seed rows above.
CROSS_VALIDATED = {"data.cv_folds": 10}
#: Xu et al. 2019 (ICLR), Table 1, GIN-0: 10-fold cross-validation accuracy in points.
XU_GIN = {"NCI1": 82.7, "PROTEINS": 76.2}
GAP = 2.0  # points: a row within this of the paper's figure counts as reproduced

#: Marks a graph row whose victims were trained before issue 14 (``model.norm`` ``"none"``).
PRE_PROTOCOL = "†"

#: The majority class's share of each dataset's graphs, in points, from the TU class counts
#: (AIDS 400/1,600; DHFR 295/461; NCI1 2,053/2,057; PROTEINS 663/450; ENZYMES 6 x 100;
#: COLLAB 2,600/775/1,625; experiments/protocol.py). Clean records carry no test-label share,
#: and the stratified test split keeps these within a graph or two. A victim below it does
#: worse than always answering the majority class (issue 14 item 1).
MAJORITY_SHARE: dict[str, float] = {
    "AIDS": 80.0,
    "DHFR": 61.0,
    "NCI1": 50.05,
    "PROTEINS": 59.57,
    "ENZYMES": 16.67,
    "COLLAB": 52.0,
}

#: Issue 14 item 1's per-row accuracy floors: (dataset label, models, points).
FLOORS: list[tuple[str, tuple[str, ...], float]] = [
    ("NCI1", ("gin",), 80.0),
    ("PROTEINS", ("gin",), 74.0),
    ("DHFR", tuple(GRAPH_MODELS), 75.0),
    ("ENZYMES + node attributes", tuple(GRAPH_MODELS), 60.0),
]
ATTRIBUTES_LABEL = "ENZYMES + node attributes"


def _protocol_victims(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """A row's runs on issue 14's victims when it has any, else its older runs marked †."""
    new = [r for r in runs if matches(r, PROTOCOL_VICTIM)]
    if new or not runs:
        return new, ""
    return runs, PRE_PROTOCOL


def _acc(runs: Sequence[Mapping[str, Any]]) -> float:
    values = [float(r["metrics"]["clean_acc"]) for r in runs if "clean_acc" in r.get("metrics", {})]
    return 100 * sum(values) / len(values) if values else math.nan


def victim_targets(
    rows: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    paper: Mapping[tuple[str, str], float],
) -> list[tuple[str, str, str]]:
    """Issue 14 item 1's victim targets, each judged over protocol victims.

    ``rows``: ``(dataset label, model) -> runs`` (only runs on issue 14's victims count;
    others are ignored); ``paper``: ``(dataset label, model) -> GraphProt Table 1 clean
    accuracy`` in points. Returns ``(target, verdict, detail)`` per target, ``verdict`` one
    of ``"pass"``, ``"fail"``, ``"no records yet"``; ``detail`` names the failing or
    measured rows. A row passes a floor when its mean accuracy over seeds reaches it.
    """
    protocol = {key: [r for r in runs if matches(r, PROTOCOL_VICTIM)] for key, runs in rows.items()}
    protocol = {key: runs for key, runs in protocol.items() if runs}
    out: list[tuple[str, str, str]] = []

    def judge(title: str, keys: list[tuple[str, str]], floor) -> None:
        measured = [(key, _acc(protocol[key])) for key in keys if key in protocol]
        if not measured:
            out.append((title, "no records yet", f"0 of {len(keys)} rows measured"))
            return
        short = [(k, a) for k, a in measured if not a >= floor(k)]
        detail = ", ".join(f"{d}/{m} {num(a, 1)}" for (d, m), a in (short or measured))
        if len(measured) < len(keys):
            detail += f"; {len(measured)} of {len(keys)} rows measured"
        out.append((title, "fail" if short else "pass", detail))

    for label, models, floor in FLOORS:
        who = models[0].upper() if len(models) == 1 else "every model"
        keys = [(label, m) for m in models]
        judge(f"{who} {label} ≥ {floor:.0f}", keys, lambda _k, f=floor: f)
    keys = sorted(rows)
    judge(
        "no victim below its dataset's majority share",
        keys,
        lambda k: MAJORITY_SHARE.get(k[0].split(" + ")[0], 0.0),
    )
    keys = sorted(k for k in rows if k in paper and not math.isnan(paper[k]))
    judge(
        f"GraphProt Table 1 clean accuracy matched within {GAP:.0f} points or beaten",
        keys,
        lambda k: paper[k] - GAP,
    )
    return out


def _floor(label: str, model: str) -> float | None:
    for row_label, models, floor in FLOORS:
        if row_label == label and model in models:
            return floor
    return None


def _cross_validation(records: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The cross-validated victims: per (dataset, model), the mean ± sample std of the test
    accuracy over folds (points), the fold count, the same row's 3-seed figure is elsewhere;
    the issue 14 floor and Xu et al.'s GIN figure where they exist. Only protocol victims
    (``PROTOCOL_VICTIM``) count. Returns the Markdown table (or a line saying there are no
    records) and the records shown."""
    records = [r for r in records if matches(r, PROTOCOL_VICTIM)]
    if not records:
        return "No cross-validated records yet.", []
    body, used = [], []
    keys = sorted(
        {(r["dataset"], r["model"], bool(r["config"]["data"]["node_attributes"])) for r in records}
    )
    for dataset, model, attributes in keys:
        runs = [
            r
            for r in records
            if (r["dataset"], r["model"], bool(r["config"]["data"]["node_attributes"]))
            == (dataset, model, attributes)
        ]
        used += runs
        label = ATTRIBUTES_LABEL if attributes else dataset
        folds = sorted({int(r["config"]["data"]["cv_fold"]) for r in runs})
        text, acc = cell(runs, "clean_acc")
        floor = _floor(label, model)
        xu = XU_GIN.get(dataset) if model == "gin" and not attributes else None
        verdict = "—" if floor is None else ("pass" if acc + 1e-9 >= floor else "fail")
        body.append(
            [
                label,
                model,
                text,
                f"{len(folds)} of 10",
                num(floor) if floor is not None else "—",
                verdict,
                num(xu) if xu is not None else "—",
            ]
        )
    table = markdown_table(
        [
            "dataset",
            "model",
            "accuracy, 10-fold (ours)",
            "folds",
            "issue 14 floor",
            "verdict",
            "Xu et al. GIN",
        ],
        body,
    )
    return table, used


@page("clean_models", inputs=["results/clean_models"])
def render(records: list[dict[str, Any]], template: PageTemplate | None = None) -> str:
    """Clean victims beside the papers' clean-model figures."""
    template = template or PageTemplate.load("clean_models")
    unattacked = where(records, attack=None, defense=None)
    link_clean = where(unattacked, LINK_LR, task="link")
    slow_lr = where(unattacked, SLOW_LR, task="link")
    graph_clean = where(unattacked, LABELS_ONLY, task="graph")
    with_attributes = where(unattacked, WITH_ATTRIBUTES, task="graph")
    link_paper = paper_lookup(reference_table("link_backdoor_table3.csv"), ["dataset", "model"])
    graph_rows = [
        r
        for r in reference_table("graphprot_table1_models_gta.csv")
        if r["defense"] == "Clean Model"
    ]
    graph_paper = paper_lookup(graph_rows, ["dataset", "model"])

    used: list[dict[str, Any]] = []  # every record a table shows
    link_body, gaps = [], []
    for dataset in LINK_DATASETS:
        for model in LINK_MODELS:
            runs = where(link_clean, dataset=dataset, model=model)
            used += runs
            auc_text, auc = cell(runs, "clean_auc")
            ap_text, _ = cell(runs, "clean_ap")
            paper = paper_value(link_paper(dataset=dataset, model=model), "benign_auc")
            gap = auc - paper
            if runs:
                gaps.append(abs(gap))
            epochs, _ = cell(runs, "clean_epochs", scale=1.0)
            val_text, _ = cell(runs, "clean_val_auc")
            link_body.append(
                [
                    dataset,
                    model,
                    auc_text,
                    num(paper),
                    num(gap, signed=True),
                    ap_text,
                    val_text,
                    epochs,
                ]
            )
    graph_body = []
    graph_short: list[str] = []
    variants = [(d, d, graph_clean) for d in GRAPH_DATASETS]
    variants.insert(
        GRAPH_DATASETS.index("ENZYMES") + 1,
        (ATTRIBUTES_LABEL, ATTRIBUTES_LABEL, with_attributes),
    )
    judged_rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    paper_acc: dict[tuple[str, str], float] = {}
    for dataset, label, pool in variants:
        dataset = dataset.split(" + ")[0]
        for model in GRAPH_MODELS:
            runs, mark = _protocol_victims(where(pool, dataset=dataset, model=model))
            used += runs
            acc_text, acc = cell(runs, "clean_acc")
            paper = paper_value(graph_paper(dataset=dataset, model=model), "acc")
            epochs, _ = cell(runs, "clean_epochs", scale=1.0)
            judged_rows[(label, model)] = runs
            # GraphProt's ENZYMES figures use the node attributes: compare that row only
            if label != "ENZYMES":
                paper_acc[(label, model)] = paper
            if acc - paper < -GAP:
                graph_short.append(f"{label}/{model}{mark} ({num(acc - paper, signed=True)})")
            graph_body.append(
                [
                    label,
                    model + mark,
                    acc_text,
                    num(paper),
                    num(acc - paper, signed=True),
                    num(MAJORITY_SHARE[dataset]),
                    epochs,
                ]
            )
    targets = victim_targets(judged_rows, paper_acc)
    cv_table, cv_used = _cross_validation(where(unattacked, CROSS_VALIDATED, task="graph"))
    used += cv_used
    target_lines = "\n".join(
        f"- {title}: **{verdict}**" + (f" ({detail})" if detail else "")
        for title, verdict, detail in targets
    )
    pre = sum(1 for row in graph_body if row[1].endswith(PRE_PROTOCOL))
    lr_body = []
    for dataset in LINK_DATASETS:
        for model in ("gic", "arga", "arvga"):
            runs = where(slow_lr, dataset=dataset, model=model)
            if not runs:
                continue
            used += runs
            auc_text, auc = cell(runs, "clean_auc")
            base_text, _ = cell(where(link_clean, dataset=dataset, model=model), "clean_auc")
            paper = paper_value(link_paper(dataset=dataset, model=model), "benign_auc")
            lr_body.append(
                [dataset, model, base_text, auc_text, num(paper), num(auc - paper, signed=True)]
            )
    return template.render(
        link_table=markdown_table(
            [
                "dataset",
                "model",
                "AUC (ours)",
                "AUC (paper)",
                "gap",
                "AP (ours)",
                "val AUC",
                "epochs",
            ],
            link_body,
        ),
        within=sum(g <= GAP for g in gaps if g == g),
        measured=len(gaps),
        lr_table=markdown_table(
            ["dataset", "model", "AUC, lr 0.01", "AUC, lr 0.001", "AUC (paper)", "gap at 0.001"],
            lr_body,
        ),
        graph_table=markdown_table(
            [
                "dataset",
                "model",
                "accuracy (ours)",
                "accuracy (paper)",
                "gap",
                "majority share",
                "epochs",
            ],
            graph_body,
        ),
        graph_short=", ".join(graph_short) if graph_short else "none",
        victim_targets=target_lines,
        cv_table=cv_table,
        pre_rows=pre,
        all_rows=len(graph_body),
        **provenance(used),
    )
