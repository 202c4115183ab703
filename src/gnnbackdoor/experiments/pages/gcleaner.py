"""``gcleaner``: GCleaner (trigger recovery + unlearning) beside the paper's Tables III-IX.

Records fall in four groups (issue 14, issue 20):

* **protocol** rows: the victim as issue 14 builds it (:data:`PROTOCOL_VICTIM`), the
  dataset's protocol target class (:data:`PROTOCOL_TARGET_CLASS`) and GCleaner at its
  registered defaults (:data:`GCLEANER_DEFAULTS`): Table III, judged by :func:`judge_row`;
* **sensitivity** rows: the same, with another target (AIDS's majority class 1);
* the **feature-prior variant** (ours, ``defense.recovery.prior=feature``) beside the
  paper's recovery on the same victims;
* **pre-protocol** records (victims without batch norm, teacher fine-tuned at the
  unlearning rate 0.05): shown in a marked section, never judged with the others.

The paper's baselines (issue 17; records of ``experiments/defense_baselines.yaml``, on the
protocol rows' victims) sit beside Table III (ABL, Prune, Randomized-Smoothing) and Table VII
(the detectors ED and XGBD), and a ranking names the defense that wins each Table III row on
our records and on the paper's (:func:`~.common.winner`); each baseline or detector more than
10 points from its paper figure is listed with a reading computed by :mod:`.baseline_readings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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
    cell,
    differs,
    matches,
    num,
    paper_value,
    provenance,
    ranking,
    resolved,
    shown,
    standing,
    unique,
    where,
)
from gnnbackdoor.experiments.pages.template import PageTemplate
from gnnbackdoor.experiments.protocol import (
    PROTOCOL_TARGET_CLASS,
    PROTOCOL_VICTIM,
    is_protocol_target,
)
from gnnbackdoor.experiments.report import markdown_table, mean_std, paper_lookup, reference_table
from gnnbackdoor.metrics import backdoor_implanted

ATTACKS = ["sba", "gta", "exp-ba", "motif-ba"]
TITLES = {"sba": "Sub-BA (SBA)", "gta": "GTA", "exp-ba": "Exp-BA", "motif-ba": "Motif-BA"}
#: Our dataset -> the paper's name.
DATASETS = {"Bitcoin": "Bitcoin", "AIDS": "AIDS", "COLLAB": "COLLAB", "Fingerprint4": "Fingerprint"}
#: The protocol of the paper's Section 5.1, as resolved settings.
PROTOCOL = {
    "data.train_fraction": 0.8,
    "attack.trigger_fraction": 0.3,
    "attack.poison_validation": True,
}
#: GCleaner's settings varied by the ablations (``experiments/gcleaner_ablations.yaml``), at
#: the values of the Table III runs. Dotted paths into the records' resolved configuration.
ABLATION_SETTINGS: dict[str, Any] = {
    "defense.explainer": "gnnexplainer",
    "defense.unlearning.heatmap": "gradcam",
    "defense.unlearning.teacher_term": True,
    "defense.num_trigger_nodes": 3,
    "defense.holding_rate": 0.03,
    "defense.auxiliary_dataset": None,
    "defense.auxiliary_pad": False,
}
#: GCleaner's registered defaults since issue 20 that the protocol rows run at (a test checks
#: them against :class:`~gnnbackdoor.defenses.gcleaner.GCleaner`): the teacher's own learning
#: rate with its held-out check, the unlearning rate, and the paper's recovery (no prior).
GCLEANER_DEFAULTS: dict[str, Any] = {
    "defense.unlearning.lr": 0.01,
    "defense.unlearning.teacher_lr": 0.01,
    "defense.unlearning.teacher_holdout": 0.2,
    "defense.recovery.prior": "none",
}
#: Our recovery variant (issue 20 item 6) shown beside the paper's.
VARIANT = {"defense.recovery.prior": "feature"}
VARIANT_TRIGGER_NODES = (3, 5)
ASR_TARGET = 7.0  # points
ACC_TARGET = 2.0  # points below the backdoored model
COSINE_TARGET = 0.6  # issue 20 item 6: Table IV cosine the variant should reach
SWEEP = "gnnbackdoor sweep experiments/gcleaner.yaml --out results/gcleaner --threads 1"
ABLATION_SWEEP = (
    "gnnbackdoor sweep experiments/gcleaner_ablations.yaml --out results/gcleaner --threads 1"
)

#: GCleaner's Table III baselines and Table VII's detectors: registered name -> the paper's
#: title. Their records come from ``experiments/defense_baselines.yaml``.
TABLE3_BASELINES = {
    "abl": "ABL",
    "prune": "Prune",
    "randomized-smoothing": "Randomized-Smoothing",
}
DETECTORS = {"ed": "ED", "xgbd": "XGBD"}
BASELINE_SWEEP = (
    "gnnbackdoor sweep experiments/defense_baselines.yaml --out results/defense_baselines "
    "--threads 1"
)
#: Runs a defense needs on a row for the ranking to compare it (issue 17: 3 seeds).
MIN_SEEDS = 3

EXPLAINERS = {
    "random": "Random",
    "gnnexplainer": "GNNExplainer",
    "pgexplainer": "PGExplainer",
    "integrated_gradients": "Integrated Gradients",
    "guided_backprop": "Guided Backprop",
}
HEATMAPS = {
    "none": "Non",
    "integrated_gradients": "IGradients",
    "guided_backprop": "Guided BP",
    "gradcam": "Ours",
}


# --- record groups -----------------------------------------------------------------------


def is_protocol_victim(record: dict[str, Any]) -> bool:
    """Whether the record's victim is built as issue 14 builds it (batch norm); pre-protocol
    records carry ``model.norm`` ``none``."""
    return matches(record, PROTOCOL_VICTIM)


def protocol_runs(
    records: list[dict[str, Any]],
    settings: dict[str, Any] | None = None,
    *,
    target: str = "protocol",
) -> list[dict[str, Any]]:
    """Attacked GCleaner records on protocol victims with GCleaner at its registered
    defaults (:data:`GCLEANER_DEFAULTS`) and the ablation settings of Table III, except
    ``settings`` (dotted paths, resolved values). ``target``: ``protocol`` keeps runs whose
    target class is their dataset's protocol target, ``sensitivity`` the others."""
    wanted = {**PROTOCOL, **ABLATION_SETTINGS, **GCLEANER_DEFAULTS, **(settings or {})}
    runs = [
        r
        for r in where(records, wanted, defense="gcleaner")
        if r.get("attack") and is_protocol_victim(r)
    ]
    keep = target == "protocol"
    return [r for r in runs if is_protocol_target(r) == keep]


def baseline_runs(records: list[dict[str, Any]], defense: str) -> list[dict[str, Any]]:
    """Attacked records of the baseline ``defense`` on the protocol: Section 5.1's settings,
    victims as issue 14 builds them, the dataset's protocol target (the victims of
    :func:`protocol_runs`)."""
    return [
        r
        for r in where(records, PROTOCOL, defense=defense)
        if r.get("attack") and is_protocol_victim(r) and is_protocol_target(r)
    ]


def pre_protocol_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attacked GCleaner records made before issue 14's protocol (victims without batch
    norm) at the Table III settings of their time (the paper's recovery, no prior)."""
    wanted = {**PROTOCOL, **ABLATION_SETTINGS, "defense.recovery.prior": "none"}
    return [
        r
        for r in where(records, wanted, defense="gcleaner")
        if r.get("attack") and not is_protocol_victim(r)
    ]


# --- per-run flags and row verdicts ------------------------------------------------------


def _metric(record: dict[str, Any], name: str) -> float | None:
    value = (record.get("metrics") or {}).get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def implanted(record: dict[str, Any]) -> bool | None:
    """The record's ``backdoor_implanted`` flag; for records older than it, the same rule
    (:func:`~gnnbackdoor.metrics.backdoor_implanted`) applied to its ASR and clean-model ASR;
    ``None`` when neither is there."""
    flag = _metric(record, "backdoor_implanted")
    if flag is not None:
        return bool(flag)
    asr, clean = _metric(record, "asr"), _metric(record, "clean_model_asr")
    if asr is None or clean is None:
        return None
    return backdoor_implanted(asr, clean)


def _flag(record: dict[str, Any], name: str) -> bool | None:
    value = _metric(record, name)
    return None if value is None else bool(value)


def exclusion(record: dict[str, Any]) -> str | None:
    """Why a run cannot test the defense, or ``None`` when it can: the backdoor did not
    implant (``not implanted``; unknown counts as not), or the backdoored model collapsed
    (``backdoored model collapsed``). Both are properties of the attack, not of GCleaner."""
    if not implanted(record):
        return "not implanted"
    if _flag(record, "backdoored_collapsed"):
        return "backdoored model collapsed"
    return None


@dataclass
class Verdict:
    """Issue 14's Table III target on one row (a dataset and attack, its seeds).

    Attributes:
        status: ``met``, ``missed``, ``excluded`` (no run implanted a non-collapsed
            backdoor) or ``missing`` (no records).
        reasons: Why a row missed or was excluded, one short phrase each.
        judged: Runs the verdict is taken on (implanted, backdoored model not collapsed).
        runs: All the row's runs.
        asr_after: Mean ASR after the defense over the judged runs, in points.
        acc_drop: Mean accuracy before minus after over the judged runs, in points.
    """

    status: str
    reasons: list[str] = field(default_factory=list)
    judged: int = 0
    runs: int = 0
    asr_after: float = float("nan")
    acc_drop: float = float("nan")

    @property
    def text(self) -> str:
        """The row's target cell: ``met``, or the status with its reasons."""
        if self.status == "missing":
            return "—"
        label = self.status if not self.reasons else f"{self.status}: {'; '.join(self.reasons)}"
        if self.status in ("met", "missed") and self.judged < self.runs:
            label += f" (on {self.judged} of {self.runs} runs)"
        return label


def _share(runs: list[dict[str, Any]], test) -> int:
    return sum(1 for r in runs if test(r))


def _left_unchanged(record: dict[str, Any]) -> bool:
    """A refused teacher with no stand-in (``unlearning.teacher_fallback=none``): GCleaner
    left the backdoored model as it was."""
    return _flag(record, "gc_teacher_refused") and not _flag(record, "gc_teacher_fallback_used")


def _refusals(row: list[dict[str, Any]]) -> str:
    """Refused teachers (k/n), with how many of them the backdoored model stood in for."""
    text = _count(row, lambda r: _flag(r, "gc_teacher_refused"))
    stood_in = sum(1 for r in row if _flag(r, "gc_teacher_fallback_used"))
    return f"{text} (stand-in {stood_in})" if stood_in else text


def judge_row(
    runs: list[dict[str, Any]],
    asr: str = "defended_asr",
    acc: str = "defended_acc",
    collapse: str | None = "defended_collapsed",
) -> Verdict:
    """Issue 14's GCleaner target on one Table III row: mean ASR after the defense at most
    :data:`ASR_TARGET` points and mean accuracy at most :data:`ACC_TARGET` points below the
    backdoored model's, both over the row's runs that implanted a non-collapsed backdoor
    (:func:`exclusion`). A defended model that collapsed in any judged run, or a teacher that
    GCleaner refused with no stand-in (the model is then left as it was), is a miss whatever
    the ASR: an ASR of 0 from a constant model is no success.

    ``asr``/``acc``/``collapse`` name the metrics after the defense, so the oracle and
    no-trigger controls are judged alike (``gc_oracle_asr``/``gc_oracle_acc``, no collapse
    flag); a run without the metric is not judged.
    """
    if not runs:
        return Verdict("missing")
    judged = [r for r in runs if exclusion(r) is None]
    judged = [r for r in judged if _metric(r, asr) is not None and _metric(r, acc) is not None]
    if not judged:
        reasons = []
        for reason in ("not implanted", "backdoored model collapsed"):
            k = _share(runs, lambda r, reason=reason: exclusion(r) == reason)
            if k:
                reasons.append(f"{reason} in {k} of {len(runs)} runs")
        if not reasons:
            reasons.append(f"no {asr} in {len(runs)} runs")
        return Verdict("excluded", reasons, 0, len(runs))
    asr_after = mean_std([_metric(r, asr) for r in judged])[0] * 100
    before = mean_std([_metric(r, "backdoored_acc") for r in judged])[0]
    after = mean_std([_metric(r, acc) for r in judged])[0]
    drop = (before - after) * 100
    reasons = []
    if not asr_after <= ASR_TARGET:
        reasons.append(f"ASR {asr_after:.2f} > {ASR_TARGET:g}")
    if not drop <= ACC_TARGET:
        reasons.append(f"acc drop {drop:.2f} > {ACC_TARGET:g}")
    if collapse is not None:
        k = _share(judged, lambda r: _flag(r, collapse))
        if k:
            reasons.append(f"defended model collapsed in {k} of {len(judged)}")
    k = _share(judged, _left_unchanged)
    if k:
        reasons.append(f"teacher refused (no unlearning) in {k} of {len(judged)}")
    status = "missed" if reasons else "met"
    return Verdict(status, reasons, len(judged), len(runs), asr_after, drop)


def summarise(verdicts: dict[str, Verdict]) -> dict[str, Any]:
    """Counts over rows (``"AIDS/sba"`` -> verdict): ``met``, ``judged`` (met or missed),
    ``excluded`` and ``missing`` with the lists of excluded (with reasons) and missing rows."""
    by = {s: [k for k, v in verdicts.items() if v.status == s] for s in ("met", "missed")}
    excluded = [
        f"{k}: {', '.join(v.reasons)}" for k, v in verdicts.items() if v.status == "excluded"
    ]
    missing = [k for k, v in verdicts.items() if v.status == "missing"]
    return {
        "met": len(by["met"]),
        "judged": len(by["met"]) + len(by["missed"]),
        "missed_list": ", ".join(by["missed"]) or "none",
        "excluded": len(excluded),
        "excluded_list": "; ".join(excluded) or "none",
        "missing": len(missing),
        "missing_list": ", ".join(missing) or "none",
        "rows": len(verdicts),
    }


# --- cells -------------------------------------------------------------------------------


def _cell(runs: list[dict[str, Any]], metric: str, scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std (n)`` over the runs that have ``metric`` (``—`` when none do)."""
    values = [v for v in (_metric(r, metric) for r in runs) if v is not None]
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f} ({len(values)})"


def _count(runs: list[dict[str, Any]], test) -> str:
    """``k/n``: runs for which ``test`` holds; ``?`` when no run says, ``k/n (u ?)`` when
    ``u`` runs do not (records older than the flag)."""
    if not runs:
        return "—"
    values = [test(r) for r in runs]
    known = [v for v in values if v is not None]
    if not known:
        return "?"
    text = f"{sum(known)}/{len(runs)}"
    return text if len(known) == len(runs) else f"{text} ({len(runs) - len(known)} ?)"


def _target_metric(runs: list[dict[str, Any]], prefix: str) -> tuple[str, float]:
    """Mean ± std over runs of ``metrics[prefix + c<target>]`` (the attack's target class)."""
    values = []
    for r in runs:
        value = _metric(r, f"{prefix}{resolved(r, 'attack.target_class')}")
        if value is not None:
            values.append(value)
    if not values:
        return "—", float("nan")
    mean, std = mean_std(values)
    return f"{mean * 100:.2f} ± {std * 100:.2f} ({len(values)})", mean * 100


def _plain(runs: list[dict[str, Any]], metric: str) -> tuple[str, float]:
    """Like :func:`_cell` for a metric that is not a fraction (similarities, DER)."""
    values = [v for v in (_metric(r, metric) for r in runs) if v is not None]
    if not values:
        return "—", float("nan")
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f} ({len(values)})", mean


def _seconds(runs: list[dict[str, Any]], name: str) -> str:
    values = [r.get("timings", {}).get(name) for r in runs]
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.1f} ± {std:.1f}"


def _targets(runs: list[dict[str, Any]]) -> str:
    return ", ".join(sorted({shown(resolved(r, "attack.target_class")) for r in runs})) or "—"


# --- Table III ---------------------------------------------------------------------------

TABLE3_HEADER = [
    "dataset",
    "attack",
    "target",
    "ASR before",
    "acc before",
    "ASR GCleaner",
    "acc GCleaner",
    "Δacc",
    "paper ASR before",
    "paper acc before",
    "paper ASR after",
    "paper acc after",
    "implanted",
    "collapsed (backdoored / defended)",
    "teacher refused",
    "issue 14 target",
]
CONTROLS_HEADER = [
    "dataset",
    "attack",
    "ASR GCleaner",
    "ASR oracle",
    "ASR no trigger",
    "acc GCleaner",
    "acc oracle",
    "acc no trigger",
    "DER",
    "robust acc",
    "defended no-trigger rate",
    "clean-model ASR",
    "Table IV cosine",
    "paper Table IV similarity",
]


def _rows(datasets: dict[str, str]):
    for dataset, paper_name in datasets.items():
        for attack in ATTACKS:
            yield dataset, paper_name, attack


def _name(dataset: str, paper_name: str) -> str:
    return paper_name if dataset == paper_name else f"{paper_name} ({dataset})"


def table3(
    runs: list[dict[str, Any]], datasets: dict[str, str] | None = None
) -> tuple[str, str, dict[str, Verdict]]:
    """Table III of ``runs`` (one section's records) beside the paper, the controls table of
    the same rows, and each row's verdict (``"AIDS/sba"`` -> :class:`Verdict`)."""
    datasets = datasets or DATASETS
    paper = paper_lookup(
        reference_table("gcleaner_table3_gin.csv"), ["dataset", "attack", "defense"]
    )
    table4 = paper_lookup(reference_table("gcleaner_table4_explainers.csv"), ["method", "attack"])
    body, controls, verdicts = [], [], {}
    for dataset, paper_name, attack in _rows(datasets):
        row = where(runs, dataset=dataset, attack=attack)
        before = paper(dataset=paper_name, attack=attack, defense="Before (no defense)")
        after = paper(dataset=paper_name, attack=attack, defense="GCleaner")
        verdict = judge_row(row)
        verdicts[f"{dataset}/{attack}"] = verdict
        _, acc_b = cell(row, "backdoored_acc")
        _, acc_d = cell(row, "defended_acc")
        name = _name(dataset, paper_name)
        body.append(
            [
                name,
                TITLES[attack],
                _targets(row),
                _cell(row, "asr"),
                _cell(row, "backdoored_acc"),
                _cell(row, "defended_asr"),
                _cell(row, "defended_acc"),
                num(acc_d - acc_b, signed=True),
                num(paper_value(before, "asr")),
                num(paper_value(before, "acc")),
                num(paper_value(after, "asr")),
                num(paper_value(after, "acc")),
                _count(row, implanted),
                f"{_count(row, lambda r: _flag(r, 'backdoored_collapsed'))} / "
                f"{_count(row, lambda r: _flag(r, 'defended_collapsed'))}",
                _refusals(row),
                verdict.text,
            ]
        )
        ref4 = table4(method="GNNExplainer", attack=attack) if dataset == "AIDS" else None
        controls.append(
            [
                name,
                TITLES[attack],
                _cell(row, "defended_asr"),
                _cell(row, "gc_oracle_asr"),
                _cell(row, "gc_notrigger_asr"),
                _cell(row, "defended_acc"),
                _cell(row, "gc_oracle_acc"),
                _cell(row, "gc_notrigger_acc"),
                _plain(row, "der")[0],
                _cell(row, "defended_robust_acc"),
                _cell(row, "defended_target_no_trigger"),
                _cell(row, "clean_model_asr"),
                _plain(row, "gc_trigger_cosine")[0],
                num(paper_value(ref4, "similarity"), 3),
            ]
        )
    return (
        markdown_table(TABLE3_HEADER, body),
        markdown_table(CONTROLS_HEADER, controls),
        verdicts,
    )


def controls_summary(runs: list[dict[str, Any]], datasets: dict[str, str] | None = None):
    """How many judged rows meet the target with the recovered trigger (GCleaner), the
    oracle (the attack's true trigger) and no trigger: ``{"recovered": (met, judged), ...}``."""
    out = {}
    for name, asr, acc, collapse in [
        ("recovered", "defended_asr", "defended_acc", "defended_collapsed"),
        ("oracle", "gc_oracle_asr", "gc_oracle_acc", None),
        ("notrigger", "gc_notrigger_asr", "gc_notrigger_acc", None),
    ]:
        verdicts = [
            judge_row(where(runs, dataset=d, attack=a), asr, acc, collapse)
            for d, _, a in _rows(datasets or DATASETS)
        ]
        out[name] = (
            sum(v.status == "met" for v in verdicts),
            sum(v.status in ("met", "missed") for v in verdicts),
        )
    return out


def _section(template: PageTemplate, runs, datasets=None, *, label: str) -> dict[str, str]:
    """Table III, its controls and summary for one group of runs (``label`` names it)."""
    main, controls, verdicts = table3(runs, datasets)
    counts = controls_summary(runs, datasets)
    values = {
        **summarise(verdicts),
        "asr_target": f"{ASR_TARGET:g}",
        "acc_target": f"{ACC_TARGET:g}",
        "oracle_met": counts["oracle"][0],
        "oracle_judged": counts["oracle"][1],
        "notrigger_met": counts["notrigger"][0],
        "notrigger_judged": counts["notrigger"][1],
        "records": len(runs),
        "label": label,
        "command": SWEEP,
    }
    if not runs:
        summary = template.fragment("no_records", **values)
    else:
        parts = [template.fragment("summary", **values)]
        if values["excluded"]:
            parts.append(template.fragment("excluded", **values))
        if values["missing"]:
            parts.append(template.fragment("missing", **values))
        has_controls = values["oracle_judged"] or values["notrigger_judged"]
        parts.append(template.fragment("controls" if has_controls else "no_controls", **values))
        summary = " ".join(parts)
    return {"table": main, "controls": controls, "summary": summary}


# --- the baselines (issue 17) ------------------------------------------------------------

BASELINES_HEADER = [
    "dataset",
    "attack",
    "defense",
    "ASR before",
    "acc before",
    "ASR after",
    "acc after",
    "Δacc",
    "paper ASR after",
    "paper acc after",
    "implanted",
    "collapsed (backdoored / defended)",
]


def _collapse_counts(row: list[dict[str, Any]]) -> str:
    return (
        f"{_count(row, lambda r: _flag(r, 'backdoored_collapsed'))} / "
        f"{_count(row, lambda r: _flag(r, 'defended_collapsed'))}"
    )


def baselines_table(records: list[dict[str, Any]]) -> tuple[str, int]:
    """Table III's ABL, Prune and Randomized-Smoothing columns, one line per (dataset,
    attack, baseline), beside the paper's; and how many records it shows."""
    paper = paper_lookup(
        reference_table("gcleaner_table3_gin.csv"), ["dataset", "attack", "defense"]
    )
    body, shown_runs = [], 0
    runs = {name: baseline_runs(records, name) for name in TABLE3_BASELINES}
    for dataset, paper_name, attack in _rows(DATASETS):
        for name, title in TABLE3_BASELINES.items():
            row = where(runs[name], dataset=dataset, attack=attack)
            shown_runs += len(row)
            ref = paper(dataset=paper_name, attack=attack, defense=title)
            _, acc_b = cell(row, "backdoored_acc")
            _, acc_d = cell(row, "defended_acc")
            body.append(
                [
                    _name(dataset, paper_name),
                    TITLES[attack],
                    title,
                    *_before_after(row),
                    num(acc_d - acc_b, signed=True),
                    num(paper_value(ref, "asr")),
                    num(paper_value(ref, "acc")),
                    _count(row, implanted),
                    _collapse_counts(row) if row else "—",
                ]
            )
    return markdown_table(BASELINES_HEADER, body), shown_runs


def _before_after(row: list[dict[str, Any]]) -> list[str]:
    """ASR and accuracy before and after the defense: the four cells both baseline tables
    share."""
    return [_cell(row, m) for m in ("asr", "backdoored_acc", "defended_asr", "defended_acc")]


TABLE7_HEADER = [
    "dataset",
    "attack",
    "defense",
    "ASR before",
    "acc before",
    "ASR after",
    "acc after",
    "paper ASR",
    "paper ACC",
    "detector precision",
    "detector recall",
    "graphs flagged",
    "graphs kept",
    "implanted",
]


def table7(records: list[dict[str, Any]], gcleaner: list[dict[str, Any]]) -> tuple[str, int]:
    """Table VII: the detectors ED and XGBD (the model retrained on the training graphs
    each keeps) and GCleaner (``gcleaner``: its protocol runs), beside the paper's (AIDS
    only; the other Table III datasets share the victims and show our figures alone); the
    detectors' precision and recall on the poisoned training graphs and their counts.
    Returns the table and how many detector records it shows."""
    paper = paper_lookup(
        reference_table("gcleaner_table7_detectors.csv"), ["dataset", "attack", "defense"]
    )
    sources = [(title, baseline_runs(records, name)) for name, title in DETECTORS.items()]
    sources.append(("GCleaner", gcleaner))
    body, shown_runs = [], 0
    for dataset, paper_name, attack in _rows(DATASETS):
        for title, runs in sources:
            row = where(runs, dataset=dataset, attack=attack)
            detector = title != "GCleaner"
            shown_runs += len(row) if detector else 0
            ref = paper(dataset=paper_name, attack=attack, defense=title)
            body.append(
                [
                    _name(dataset, paper_name),
                    TITLES[attack],
                    title,
                    *_before_after(row),
                    num(paper_value(ref, "asr")),
                    num(paper_value(ref, "acc")),
                    _cell(row, "detector_precision") if detector else "—",
                    _cell(row, "detector_recall") if detector else "—",
                    _cell(row, "num_flagged", scale=1.0, digits=1) if detector else "—",
                    _cell(row, "num_kept_graphs", scale=1.0, digits=1) if detector else "—",
                    _count(row, implanted),
                ]
            )
    return markdown_table(TABLE7_HEADER, body), shown_runs


def rank_status(by_defense: dict[str, list[dict[str, Any]]]) -> str | None:
    """``None`` when every defense of a row has at least :data:`MIN_SEEDS` runs and every
    run's backdoor implanted into a model that did not collapse (:func:`exclusion`); else
    why not."""
    short = [d for d, rs in by_defense.items() if len(rs) < MIN_SEEDS]
    if short:
        return f"fewer than {MIN_SEEDS} seeds ({', '.join(short)})"
    runs = [r for rs in by_defense.values() for r in rs]
    for reason in ("backdoored model collapsed", "not implanted"):
        k = _share(runs, lambda r, reason=reason: exclusion(r) == reason)
        if k:
            return f"{reason} in {k} of {len(runs)} runs"
    return None


def _table3_and_7():
    """Lookups ``(dataset=, attack=, defense=) -> row`` of the paper's Table III (GIN) and
    Table VII (detectors)."""
    keys = ["dataset", "attack", "defense"]
    return (
        paper_lookup(reference_table("gcleaner_table3_gin.csv"), keys),
        paper_lookup(reference_table("gcleaner_table7_detectors.csv"), keys),
    )


def ranking_rows(records: list[dict[str, Any]], gcleaner: list[dict[str, Any]]) -> list[RankRow]:
    """One :class:`~.common.RankRow` per Table III row (dataset, GIN, attack): GCleaner
    (``gcleaner``: its protocol runs), ABL, Prune and Randomized-Smoothing, and on AIDS also
    Table VII's ED and XGBD; the paper's standings from Table III (each defense's accuracy
    against its *Before* column) and, for ED and XGBD, Table VII against Table III's AIDS
    *Before* accuracy (Table VII's GCleaner column repeats Table III's)."""
    table3_, table7_ = _table3_and_7()
    names = {**TABLE3_BASELINES, **DETECTORS}
    runs = {name: baseline_runs(records, name) for name in names}
    out = []
    for dataset, paper_name, attack in _rows(DATASETS):
        defenses = {"gcleaner": "GCleaner", **TABLE3_BASELINES}
        if dataset == "AIDS":
            defenses.update(DETECTORS)
        by_defense = {"GCleaner": where(gcleaner, dataset=dataset, attack=attack)}
        for name, title in defenses.items():
            if name != "gcleaner":
                by_defense[title] = where(runs[name], dataset=dataset, attack=attack)
        ours = [standing(title, by_defense[title]) for title in defenses.values()]
        before = paper_value(
            table3_(dataset=paper_name, attack=attack, defense="Before (no defense)"), "acc"
        )
        paper = []
        for name, title in defenses.items():
            source = table7_ if name in DETECTORS else table3_
            ref = source(dataset=paper_name, attack=attack, defense=title)
            asr, acc = paper_value(ref, "asr"), paper_value(ref, "acc")
            if not math.isnan(asr):
                paper.append(Standing(title, asr, before - acc))
        measured = {title: rs for title, rs in by_defense.items() if rs}
        out.append(
            RankRow(
                [_name(dataset, paper_name), "gin", TITLES[attack]],
                list(defenses.values()),
                [s for s in ours if s is not None],
                paper,
                rank_status(measured) if measured else None,
            )
        )
    return out


def far_cells(records: list[dict[str, Any]]) -> list[BaselineCell]:
    """One :class:`~.baseline_readings.BaselineCell` per (dataset, attack, baseline) of the
    Table III baselines table and per detector row of Table VII: the runs those rows show
    (:func:`baseline_runs`), the paper's figures beside them (Table III; Table VII for ED
    and XGBD) and Table III's *Before* figures as the paper's backdoored model (Table VII
    gives none; the ranking does the same)."""
    table3_, table7_ = _table3_and_7()
    names = {**TABLE3_BASELINES, **DETECTORS}
    runs = {name: baseline_runs(records, name) for name in names}
    out = []
    for dataset, paper_name, attack in _rows(DATASETS):
        before = table3_(dataset=paper_name, attack=attack, defense="Before (no defense)")
        for name, title in names.items():
            source = table7_ if name in DETECTORS else table3_
            ref = source(dataset=paper_name, attack=attack, defense=title)
            out.append(
                BaselineCell(
                    (_name(dataset, paper_name), "gin", TITLES[attack]),
                    name,
                    title,
                    where(runs[name], dataset=dataset, attack=attack),
                    paper_value(ref, "asr"),
                    paper_value(ref, "acc"),
                    paper_value(before, "asr"),
                    paper_value(before, "acc"),
                )
            )
    return out


def _baselines_section(template: PageTemplate, records, main) -> tuple[dict[str, str], list]:
    """Template values of the baselines, Table VII and the ranking, and the records shown."""
    table, shown3 = baselines_table(records)
    t7, shown7 = table7(records, main)
    ranked, (agree, compared, total) = ranking(
        ranking_rows(records, main), ["dataset", "model", "attack"]
    )
    used = [r for name in {**TABLE3_BASELINES, **DETECTORS} for r in baseline_runs(records, name)]
    missing = template.fragment("no_baselines", command=BASELINE_SWEEP)
    far = far_rows(far_cells(records))
    return {
        "far_table": far_table(far) or template.fragment("far_none"),
        **far_summary(far),
        "baselines_table": table,
        "baselines_note": "" if shown3 else "\n\n" + missing,
        "table7": t7,
        "table7_note": "" if shown7 else "\n\n" + missing,
        "ranking_table": ranked,
        "rank_limit": f"{RANK_ACC_DROP:g}",
        "rank_seeds": MIN_SEEDS,
        "rank_agree": agree,
        "rank_compared": compared,
        "rank_rows": total,
    }, used


# --- our recovery variant ----------------------------------------------------------------


def variant_table(runs: list[dict[str, Any]]) -> tuple[str, dict[str, tuple[int, int, int]]]:
    """The feature-prior variant (ours) beside the paper's recovery on AIDS, per attack and
    ``n``: ASR and accuracy after, Table IV cosine, the oracle's ASR (cells over all runs);
    and per recovery (``none``: the paper's, ``feature``: ours) ``(rows with a mean cosine
    >= COSINE_TARGET, rows whose mean ASR after is at most ASR_TARGET points above the
    oracle's, rows)``, the means over the runs :func:`exclusion` keeps (issue 20 item 6's
    success: both on most AIDS rows)."""
    paper3 = paper_lookup(
        reference_table("gcleaner_table3_gin.csv"), ["dataset", "attack", "defense"]
    )
    table4 = paper_lookup(reference_table("gcleaner_table4_explainers.csv"), ["method", "attack"])
    body = []
    tally = {"none": [0, 0, 0], "feature": [0, 0, 0]}
    for attack in ATTACKS:
        for n in VARIANT_TRIGGER_NODES:
            for prior in ("none", "feature"):
                settings = {"defense.num_trigger_nodes": n, "defense.recovery.prior": prior}
                row = where(protocol_runs(runs, settings), dataset="AIDS", attack=attack)
                judged = [r for r in row if exclusion(r) is None]
                cosine = _plain(judged, "gc_trigger_cosine")[1]
                after = mean_std([_metric(r, "defended_asr") for r in judged])[0] * 100
                oracle = mean_std([_metric(r, "gc_oracle_asr") for r in judged])[0] * 100
                close = "—"
                if not math.isnan(after) and not math.isnan(oracle):
                    closed = after - oracle <= ASR_TARGET
                    close = "yes" if closed else "no"
                    tally[prior][2] += 1
                    tally[prior][1] += closed
                    tally[prior][0] += bool(cosine >= COSINE_TARGET)
                body.append(
                    [
                        TITLES[attack],
                        n,
                        "feature prior (ours)" if prior == "feature" else "paper (Eq. 8 only)",
                        _cell(row, "defended_asr"),
                        _cell(row, "defended_acc"),
                        _cell(row, "gc_oracle_asr"),
                        close,
                        _plain(row, "gc_trigger_cosine")[0],
                        _count(row, implanted),
                        num(
                            paper_value(
                                paper3(dataset="AIDS", attack=attack, defense="GCleaner"), "asr"
                            )
                        ),
                        num(
                            paper_value(table4(method="GNNExplainer", attack=attack), "similarity"),
                            3,
                        ),
                    ]
                )
    header = [
        "attack",
        "n",
        "recovery",
        "ASR after",
        "acc after",
        "ASR oracle",
        f"within {ASR_TARGET:g} of oracle",
        "Table IV cosine",
        "implanted",
        "paper ASR after",
        "paper Table IV similarity",
    ]
    return markdown_table(header, body), {k: tuple(v) for k, v in tally.items()}


# --- recovery diagnostics and ablations (protocol runs) ----------------------------------


def _recovery(runs: list[dict[str, Any]]) -> str:
    body = []
    for dataset, paper_name, attack in _rows(DATASETS):
        row = where(runs, dataset=dataset, attack=attack)
        if not row:
            continue
        body.append(
            [
                _name(dataset, paper_name),
                TITLES[attack],
                _plain(row, "gc_clean_similarity")[0],
                _plain(row, "gc_recovery_similarity")[0],
                _target_metric(row, "gc_recovery_asr_c")[0],
                _target_metric(row, "gc_recovery_clean_model_asr_c")[0],
                _target_metric(row, "gc_unlearned_recovery_asr_c")[0],
                _seconds(row, "gcleaner_recovery_s"),
                _seconds(row, "gcleaner_unlearning_s"),
            ]
        )
    if not body:
        return ""
    return markdown_table(
        [
            "dataset",
            "attack",
            "Eq. 8 score w/o trigger (centred, ours)",
            "Eq. 8 score w/ recovered trigger (centred, ours)",
            "recovered trigger's ASR (backdoored)",
            "recovered trigger's ASR (never-poisoned model)",
            "recovered trigger's ASR (purified)",
            "recovery s",
            "unlearning s",
        ],
        body,
    )


def _aids(records, settings: dict[str, Any], attack: str) -> list[dict[str, Any]]:
    return where(protocol_runs(records, settings), dataset="AIDS", attack=attack)


def _explainers(records) -> str:
    paper = paper_lookup(reference_table("gcleaner_table4_explainers.csv"), ["method", "attack"])
    body = []
    for key, title in EXPLAINERS.items():
        for attack in ATTACKS:
            runs = _aids(records, {"defense.explainer": key}, attack)
            row = paper(method=title, attack=attack)
            body.append(
                [
                    title,
                    TITLES[attack],
                    _plain(runs, "gc_trigger_cosine")[0],
                    num(paper_value(row, "similarity"), 3),
                    _target_metric(runs, "gc_recovery_asr_c")[0],
                    _cell(runs, "defended_asr"),
                    _cell(runs, "defended_acc"),
                    num(paper_value(row, "recovery_asr")),
                    num(paper_value(row, "unlearn_asr")),
                ]
            )
    return markdown_table(
        [
            "placement",
            "attack",
            "cosine, original vs recovered trigger",
            "paper similarity",
            "recovery ASR",
            "ASR after",
            "acc after",
            "paper recovery ASR",
            "paper ASR after",
        ],
        body,
    )


def _heatmaps(records) -> str:
    paper = paper_lookup(reference_table("gcleaner_table6_heatmaps.csv"), ["attack", "heatmap"])
    body = []
    for attack in ATTACKS:
        for key, title in HEATMAPS.items():
            runs = _aids(records, {"defense.unlearning.heatmap": key}, attack)
            row = paper(attack=attack, heatmap=title)
            label = "Grad-CAM, every layer (ours)" if key == "gradcam" else title
            body.append(
                [
                    TITLES[attack],
                    label,
                    _cell(runs, "defended_asr"),
                    _cell(runs, "defended_acc"),
                    num(paper_value(row, "asr")),
                    num(paper_value(row, "acc")),
                ]
            )
    return markdown_table(
        ["attack", "attention map", "ASR after", "acc after", "paper ASR", "paper acc"], body
    )


def _components(records) -> str:
    paper = reference_table("gcleaner_table9_components.csv")
    rows = [
        ("no", "no", "no", None),
        (
            "yes",
            "no",
            "no",
            {"defense.unlearning.teacher_term": False, "defense.unlearning.heatmap": "none"},
        ),
        ("yes", "yes", "no", {"defense.unlearning.heatmap": "none"}),
        ("yes", "yes", "yes", {}),
    ]
    body = []
    for student, teacher, heat, settings in rows:
        ref = next(
            (
                r
                for r in paper
                if (r["student_term"], r["teacher_term"], r["heatmap"]) == (student, teacher, heat)
            ),
            None,
        )
        if settings is None:  # no unlearning: the backdoored model (default runs' "before")
            runs = _aids(records, {}, "sba")
            asr, acc = _cell(runs, "asr"), _cell(runs, "backdoored_acc")
        else:
            runs = _aids(records, settings, "sba")
            asr, acc = _cell(runs, "defended_asr"), _cell(runs, "defended_acc")
        body.append(
            [
                student,
                teacher,
                heat,
                asr,
                acc,
                num(paper_value(ref, "asr")),
                num(paper_value(ref, "acc")),
            ]
        )
    return markdown_table(
        [
            "‖S(G_t)−S(G_c)‖",
            "‖T(G_c)−S(G_c)‖",
            "heat map",
            "ASR",
            "acc",
            "paper ASR",
            "paper acc",
        ],
        body,
    )


def _trigger_nodes(records) -> str:
    paper = paper_lookup(reference_table("gcleaner_table8_trigger_nodes.csv"), ["n"])
    body = []
    for n in range(1, 8):
        runs = _aids(records, {"defense.num_trigger_nodes": n}, "sba")
        row = paper(n=str(n))
        body.append(
            [
                n,
                _cell(runs, "defended_asr"),
                _cell(runs, "defended_acc"),
                _target_metric(runs, "gc_recovery_asr_c")[0],
                _plain(runs, "gc_trigger_cosine")[0],
                num(paper_value(row, "asr")),
                num(paper_value(row, "acc")),
            ]
        )
    return markdown_table(
        [
            "n",
            "ASR after",
            "acc after",
            "recovery ASR",
            "Table IV cosine",
            "paper ASR",
            "paper acc",
        ],
        body,
    )


def _holding(records) -> str:
    body = []
    for rate in ["0.01", "0.03", "0.05", "0.07", "0.1"]:
        runs = _aids(records, {"defense.holding_rate": float(rate)}, "sba")
        body.append(
            [
                f"{float(rate) * 100:g} %",
                _cell(runs, "num_defender_graphs", scale=1.0, digits=1),
                _cell(runs, "asr"),
                _cell(runs, "defended_asr"),
                _cell(runs, "defended_acc"),
            ]
        )
    return markdown_table(
        ["holding rate", "defender graphs", "ASR before", "ASR after", "acc after"], body
    )


def _auxiliary(records) -> str:
    paper = paper_lookup(reference_table("gcleaner_table5_auxiliary.csv"), ["setting", "attack"])
    body = []
    for attack in ATTACKS:
        settings = {"defense.auxiliary_dataset": "NCI1", "defense.auxiliary_pad": True}
        runs = _aids(records, settings, attack)
        row = paper(setting="NCI1->AIDS", attack=attack)
        body.append(
            [
                "NCI1 → AIDS",
                TITLES[attack],
                _cell(runs, "defended_asr"),
                _cell(runs, "defended_acc"),
                num(paper_value(row, "asr")),
                num(paper_value(row, "acc")),
            ]
        )
    return markdown_table(
        ["setting", "attack", "ASR after", "acc after", "paper ASR", "paper acc"], body
    )


# --- the page ----------------------------------------------------------------------------


def _settings_seen(runs: list[dict[str, Any]], path: str) -> str:
    return ", ".join(sorted({shown(resolved(r, path)) for r in runs})) or "—"


@page("gcleaner", inputs=["results/gcleaner"], optional=["results/defense_baselines"])
def render(records: list[dict[str, Any]], template: PageTemplate | None = None) -> str:
    """GCleaner beside its paper: Table III (protocol, majority-target sensitivity and
    pre-protocol records apart), the controls, our feature-prior variant, the recovery's
    figures and the ablations."""
    template = template or PageTemplate.load("gcleaner")
    mine = where(records, defense="gcleaner")
    main = protocol_runs(mine)
    sensitivity = protocol_runs(mine, target="sensitivity")
    old = pre_protocol_runs(mine)
    protocol_section = _section(template, main, label="protocol")
    shown_datasets = {
        d: name for d, name in DATASETS.items() if d == "AIDS" or where(sensitivity, dataset=d)
    }
    sensitivity_section = _section(
        template, sensitivity, shown_datasets, label="majority-target sensitivity"
    )
    old_section = _section(template, old, label="pre-protocol")
    variant, tally = variant_table(mine)
    variant_runs = [
        r
        for n in VARIANT_TRIGGER_NODES
        for r in protocol_runs(mine, {**VARIANT, "defense.num_trigger_nodes": n})
    ]
    baselines, baseline_used = _baselines_section(template, records, main)
    # Ablations compare against the default runs of the same seeds only.
    current = [r for r in mine if is_protocol_victim(r) and is_protocol_target(r)]
    varied = {r.get("seed") for r in current if differs(r, ABLATION_SETTINGS)}
    abl = [r for r in current if r.get("seed") in varied]
    seeds_note = (
        template.fragment("seeds", seeds=", ".join(str(s) for s in sorted(varied)))
        if varied
        else template.fragment("no_ablations", command=ABLATION_SWEEP)
    )
    return template.render(
        targets=", ".join(f"{d} {c}" for d, c in PROTOCOL_TARGET_CLASS.items() if d in DATASETS),
        table3=protocol_section["table"],
        controls_table=protocol_section["controls"],
        summary=protocol_section["summary"],
        sensitivity_table=sensitivity_section["table"],
        sensitivity_controls=sensitivity_section["controls"],
        sensitivity_summary=sensitivity_section["summary"],
        variant_table=variant,
        variant_summary=(
            template.fragment(
                "variant",
                records=len(variant_runs),
                cosine_target=f"{COSINE_TARGET:g}",
                asr_target=f"{ASR_TARGET:g}",
                f_cosine=tally["feature"][0],
                f_close=tally["feature"][1],
                f_rows=tally["feature"][2],
                p_cosine=tally["none"][0],
                p_close=tally["none"][1],
                p_rows=tally["none"][2],
            )
            if variant_runs
            else template.fragment("no_variant", command=SWEEP)
        ),
        cosine_target=f"{COSINE_TARGET:g}",
        asr_target=f"{ASR_TARGET:g}",
        teacher_lr=shown(GCLEANER_DEFAULTS["defense.unlearning.teacher_lr"]),
        unlearning_lr=shown(GCLEANER_DEFAULTS["defense.unlearning.lr"]),
        teacher_holdout=f"{GCLEANER_DEFAULTS['defense.unlearning.teacher_holdout'] * 100:g}",
        old_table=old_section["table"],
        old_summary=old_section["summary"],
        old_records=len(old),
        old_lr=_settings_seen(old, "defense.unlearning.lr"),
        old_teacher_lr=_settings_seen(old, "defense.unlearning.teacher_lr"),
        old_targets=_targets(old),
        old_norm=_settings_seen(old, "model.norm"),
        recovery_table=_recovery(main)
        or template.fragment("no_records", label="protocol", command=SWEEP),
        seeds_note=seeds_note,
        explainers_table=_explainers(abl),
        heatmaps_table=_heatmaps(abl),
        components_table=_components(abl),
        trigger_nodes_table=_trigger_nodes(abl),
        holding_table=_holding(abl),
        auxiliary_table=_auxiliary(abl),
        **baselines,
        **provenance(unique(mine + baseline_used)),
    )
