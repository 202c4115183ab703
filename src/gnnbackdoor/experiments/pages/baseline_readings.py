"""Issue 17's closing note: each defense baseline more than :data:`FAR_POINTS` points from
its paper figure, read by rules from the records' own figures.

A page hands in one :class:`BaselineCell` per (dataset, model, attack, baseline) it shows
beside a paper figure: the runs of its baseline row and the paper's figures after the
defense and for the backdoored model. :func:`far_rows` keeps each measure (ASR or accuracy
after the defense) whose mean over the runs differs from the paper's by more than
:data:`FAR_POINTS` and gives it a :class:`Reading` by :func:`read_asr` or :func:`read_acc`,
rules on the cell's figures alone (the pages' templates state them; no per-row text is
written by hand); :func:`evidence` lists the mechanism figures the baseline's records carry.
The page's template holds the prose; this module only the rules, the table and the counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gnnbackdoor.experiments.pages.common import cell, num
from gnnbackdoor.experiments.pages.graphprot_summary import collapsed, implanted
from gnnbackdoor.experiments.report import markdown_table, mean_std

#: Points: a baseline's figure is *far* from the paper's when they differ by more than this;
#: the rules of :func:`read_asr` and :func:`read_acc` use the same margin.
FAR_POINTS = 10.0

NAN = float("nan")


class Measure(StrEnum):
    """The figure after the defense that a row compares."""

    ASR = "ASR"
    ACC = "ACC"


class Reading(StrEnum):
    """What a far cell's figures say (:func:`read_asr`, :func:`read_acc`)."""

    NOT_COMPARABLE = "attack did not implant / collapsed: not comparable"
    DEFENDED_COLLAPSED = "the defended model collapsed"
    BACKDOOR_DIFFERS = "the victim's backdoor differs"
    REMOVES_LITTLE = "removes little"
    AT_FLOOR = "at its floor"
    REMOVES_MORE = "removes more than the paper's"
    PARTIAL = "partial removal"
    ACCURACY_DIFFERS = "the victim's accuracy differs"
    COSTS_ACCURACY = "the defense costs accuracy"
    COSTS_LESS = "costs less than the paper's"
    OTHER = "other"


#: Readings in the order of their rules (the summary counts them in this order).
ASR_READINGS = [
    Reading.NOT_COMPARABLE,
    Reading.DEFENDED_COLLAPSED,
    Reading.BACKDOOR_DIFFERS,
    Reading.REMOVES_LITTLE,
    Reading.AT_FLOOR,
    Reading.REMOVES_MORE,
    Reading.PARTIAL,
]
ACC_READINGS = [
    Reading.DEFENDED_COLLAPSED,
    Reading.ACCURACY_DIFFERS,
    Reading.COSTS_ACCURACY,
    Reading.COSTS_LESS,
    Reading.OTHER,
]


def _known(*values: float) -> bool:
    return not any(v is None or math.isnan(v) for v in values)


def _far(a: float, b: float, limit: float) -> bool:
    """``|a − b| > limit`` (``False`` when either is missing)."""
    return _known(a, b) and abs(a - b) > limit


def _near(a: float, b: float, limit: float) -> bool:
    """``|a − b| <= limit`` (``False`` when either is missing)."""
    return _known(a, b) and abs(a - b) <= limit


def _victim_accounts(gap: float, victim_gap: float, limit: float) -> bool:
    """Whether the backdoored models' gap to the paper (``victim_gap``, ours − paper) is
    more than ``limit``, on the side of the gap after the defense (``gap``), and accounts
    for it within ``limit`` (``|gap| <= |victim_gap| + limit``)."""
    return (
        _known(gap, victim_gap)
        and abs(victim_gap) > limit
        and victim_gap * gap > 0
        and abs(gap) <= abs(victim_gap) + limit
    )


def read_asr(
    ours: float,
    paper: float,
    backdoored: float,
    paper_backdoored: float,
    no_trigger: float,
    *,
    comparable: bool = True,
    defended_collapsed: bool = False,
    limit: float = FAR_POINTS,
) -> Reading:
    """The reading of a far ASR after the defense, the first rule that holds:

    1. ``comparable`` is false (in some run the attack did not implant or the backdoored
       model collapsed): :attr:`Reading.NOT_COMPARABLE`;
    2. ``defended_collapsed`` (the defended model collapsed in every run) and ours within
       ``limit`` of the defended no-trigger rate (the ASR is that of a model naming mostly
       one class, triggered or not): :attr:`Reading.DEFENDED_COLLAPSED`;
    3. our backdoored ASR is more than ``limit`` from the paper's, on the same side as the
       ASR after the defense, and that gap is at most ``limit`` larger than the backdoored
       one (the victim accounts for it): :attr:`Reading.BACKDOOR_DIFFERS`;
    4. ours above the paper's and within ``limit`` of our backdoored ASR:
       :attr:`Reading.REMOVES_LITTLE`;
    5. ours above the paper's and within ``limit`` of the defended no-trigger rate (the
       share of clean graphs of the other classes the defended model labels with the
       target): :attr:`Reading.AT_FLOOR`;
    6. ours below the paper's: :attr:`Reading.REMOVES_MORE`;
    7. else :attr:`Reading.PARTIAL`.

    Args:
        ours: Our mean ASR after the defense, points.
        paper: The paper's ASR after the defense, points.
        backdoored: Our mean ASR of the backdoored models (the same runs), points.
        paper_backdoored: The paper's backdoored-model ASR, points (NaN: none).
        no_trigger: Our mean defended no-trigger rate, points (NaN: not measured).
        comparable: Whether every run implanted a backdoor into a model that did not
            collapse.
        defended_collapsed: Whether the defended model collapsed in every run.
        limit: The margin, points.
    """
    if not comparable:
        return Reading.NOT_COMPARABLE
    if defended_collapsed and _near(ours, no_trigger, limit):
        return Reading.DEFENDED_COLLAPSED
    gap = ours - paper
    if _victim_accounts(gap, backdoored - paper_backdoored, limit):
        return Reading.BACKDOOR_DIFFERS
    if gap > 0 and _near(ours, backdoored, limit):
        return Reading.REMOVES_LITTLE
    if gap > 0 and _near(ours, no_trigger, limit):
        return Reading.AT_FLOOR
    if gap < 0:
        return Reading.REMOVES_MORE
    return Reading.PARTIAL


def read_acc(
    ours: float,
    paper: float,
    backdoored: float,
    paper_backdoored: float,
    *,
    defended_collapsed: bool = False,
    limit: float = FAR_POINTS,
) -> Reading:
    """The reading of a far accuracy after the defense, the first rule that holds:

    1. ``defended_collapsed`` (in every run): :attr:`Reading.DEFENDED_COLLAPSED`;
    2. our backdoored accuracy is more than ``limit`` from the paper's, on the same side
       as the accuracy after the defense, and that gap is at most ``limit`` larger than the
       backdoored one (the victim accounts for it): :attr:`Reading.ACCURACY_DIFFERS`;
    3. our drop (backdoored − after) is more than ``limit`` above the paper's:
       :attr:`Reading.COSTS_ACCURACY`;
    4. ours above the paper's: :attr:`Reading.COSTS_LESS`;
    5. else :attr:`Reading.OTHER`.

    Args are in points, as :func:`read_asr`'s (``backdoored``: our backdoored models' mean
    accuracy over the same runs; ``paper_backdoored`` NaN when the paper gives none).
    """
    if defended_collapsed:
        return Reading.DEFENDED_COLLAPSED
    if _victim_accounts(ours - paper, backdoored - paper_backdoored, limit):
        return Reading.ACCURACY_DIFFERS
    drop, paper_drop = backdoored - ours, paper_backdoored - paper
    if _known(drop, paper_drop) and drop - paper_drop > limit:
        return Reading.COSTS_ACCURACY
    if ours > paper:
        return Reading.COSTS_LESS
    return Reading.OTHER


# --- evidence ------------------------------------------------------------------------------

#: Per baseline (registered name), the mechanism figures its records carry, as
#: ``(label, metric, kind)``: kind ``"%"`` a fraction shown in points, ``"n"`` a count, or
#: ``"a/b"`` two counts (``metric`` is ``"a/b"``). Every baseline also shows
#: :data:`COMMON_EVIDENCE`.
EVIDENCE: dict[str, list[tuple[str, str, str]]] = {
    "gnnsecurer": [
        ("rejected", "gnnsecurer_rejected_fraction", "%"),
        ("reference reject rate", "gnnsecurer_reference_reject_rate", "%"),
    ],
    "fine-pruning": [
        ("pruned units", "fp_pruned_units/fp_units", "a/b"),
        ("pruned activity share", "fp_pruned_activity_share", "%"),
        ("defender graphs", "num_defender_graphs", "n"),
    ],
    "randomized-smoothing": [
        ("certified", "rs_certified_fraction", "%"),
        ("subgraph ASR", "subgraph_asr", "%"),
        ("subgraph ACC", "subgraph_acc", "%"),
        ("rejected", "rs_rejected_fraction", "%"),
    ],
    "abl": [
        ("isolated", "abl_isolated", "n"),
        ("precision", "detector_precision", "%"),
        ("recall", "detector_recall", "%"),
    ],
    "prune": [
        ("removed nodes", "prune_removed_node_fraction", "%"),
        ("rejected", "prune_rejected_fraction", "%"),
    ],
    "ed": [
        ("precision", "detector_precision", "%"),
        ("recall", "detector_recall", "%"),
        ("kept graphs", "num_kept_graphs/num_train_graphs", "a/b"),
    ],
}
EVIDENCE["xgbd"] = EVIDENCE["ed"]
COMMON_EVIDENCE = [
    ("majority share after", "defended_majority_share", "%"),
    ("no-trigger rate", "defended_target_no_trigger", "%"),
    ("robust ACC", "defended_robust_acc", "%"),
]


def _mean(runs: Sequence[Mapping[str, Any]], metric: str) -> float:
    """Mean of ``metric`` over the runs that carry it (NaN when none does)."""
    return mean_std([(r.get("metrics") or {}).get(metric, NAN) for r in runs])[0]


def evidence(baseline: str, runs: Sequence[Mapping[str, Any]]) -> str:
    """``label value; ...``: the means over ``runs`` of :data:`EVIDENCE` ``[baseline]`` and
    :data:`COMMON_EVIDENCE` (fractions in points, counts with one decimal; ``—`` for a
    figure no run carries; ``(k of n runs)`` after a mean that only k of the n runs carry,
    e.g. a metric added after the others were recorded)."""
    parts = []
    for label, metric, kind in [*EVIDENCE.get(baseline, []), *COMMON_EVIDENCE]:
        if kind == "a/b":
            a, b = (_mean(runs, m) for m in metric.split("/"))
            value = f"{num(a, 1)}/{num(b, 1)}" if _known(a, b) else "—"
        elif kind == "%":
            value = num(_mean(runs, metric) * 100, 1)
        else:
            value = num(_mean(runs, metric), 1)
        carried = sum(metric in (r.get("metrics") or {}) for r in runs)
        if kind != "a/b" and 0 < carried < len(runs):
            value += f" ({carried} of {len(runs)} runs)"
        parts.append(f"{label} {value}")
    return "; ".join(parts)


# --- the cells and the table ---------------------------------------------------------------


@dataclass
class BaselineCell:
    """One (dataset, model, attack, baseline) a page shows beside a paper figure.

    Attributes:
        labels: ``(dataset, model, attack)`` as the page shows them.
        baseline: The baseline's registered name (its :data:`EVIDENCE` key).
        title: The paper's name for it.
        runs: The records of the page's baseline row (protocol target, issue 14's victims).
        paper_asr: The paper's ASR after the defense, points (NaN: none).
        paper_acc: The paper's accuracy after the defense, points.
        paper_backdoored_asr: The paper's backdoored-model ASR, points.
        paper_backdoored_acc: The paper's backdoored-model accuracy, points.
    """

    labels: tuple[str, str, str]
    baseline: str
    title: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    paper_asr: float = NAN
    paper_acc: float = NAN
    paper_backdoored_asr: float = NAN
    paper_backdoored_acc: float = NAN


def incomparable(runs: Sequence[Mapping[str, Any]]) -> str | None:
    """Why ``runs`` cannot be set beside a paper's ASR (``not implanted in k of n``,
    ``collapsed in k of n``, by :func:`~.graphprot_summary.implanted` and
    :func:`~.graphprot_summary.collapsed`), or ``None`` when every run implanted a backdoor
    into a model that did not collapse."""
    counts = [
        ("not implanted", sum(not implanted(r) for r in runs)),
        ("collapsed", sum(collapsed(r) for r in runs)),
    ]
    return ", ".join(f"{what} in {k} of {len(runs)}" for what, k in counts if k) or None


@dataclass(frozen=True)
class FarRow:
    """One far (cell, measure): the figures in points and the reading.

    Attributes:
        why: For :attr:`Reading.NOT_COMPARABLE`, which runs failed (:func:`incomparable`).
        then: For :attr:`Reading.NOT_COMPARABLE`, what the other rules read from the
            figures regardless (shown, never counted).
    """

    cell: BaselineCell
    measure: Measure
    ours: float
    paper: float
    backdoored: float
    paper_backdoored: float
    reading: Reading
    why: str | None = None
    then: Reading | None = None

    @property
    def difference(self) -> float:
        return self.ours - self.paper


def far_rows(cells: Sequence[BaselineCell], limit: float = FAR_POINTS) -> list[FarRow]:
    """Each (cell, measure) whose mean after the defense over the cell's runs differs from
    the paper's by more than ``limit`` points, with its reading; cells without runs or
    without a paper figure give none. ASR after is ``defended_asr``, accuracy after
    ``defended_acc``; the backdoored figures are the same runs' ``asr`` and
    ``backdoored_acc``; the floor is ``defended_target_no_trigger``; the defended model
    collapsed when every run's ``defended_collapsed`` flag is set."""
    out = []
    for c in cells:
        if not c.runs:
            continue
        asr = cell(c.runs, "defended_asr")[1]
        acc = cell(c.runs, "defended_acc")[1]
        bd_asr = cell(c.runs, "asr")[1]
        bd_acc = cell(c.runs, "backdoored_acc")[1]
        down = all((r.get("metrics") or {}).get("defended_collapsed") for r in c.runs)
        if _far(asr, c.paper_asr, limit):
            why = incomparable(c.runs)
            floor = _mean(c.runs, "defended_target_no_trigger") * 100
            figures = (asr, c.paper_asr, bd_asr, c.paper_backdoored_asr, floor)
            alone = read_asr(*figures, defended_collapsed=down, limit=limit)
            reading = alone if why is None else Reading.NOT_COMPARABLE  # read_asr's rule 1
            then = alone if why is not None else None
            paper = (c.paper_asr, bd_asr, c.paper_backdoored_asr)
            out.append(FarRow(c, Measure.ASR, asr, *paper, reading, why=why, then=then))
        if _far(acc, c.paper_acc, limit):
            reading = read_acc(
                acc,
                c.paper_acc,
                bd_acc,
                c.paper_backdoored_acc,
                defended_collapsed=down,
                limit=limit,
            )
            out.append(
                FarRow(c, Measure.ACC, acc, c.paper_acc, bd_acc, c.paper_backdoored_acc, reading)
            )
    return out


FAR_HEADER = [
    "dataset",
    "model",
    "attack",
    "baseline",
    "measure",
    "ours",
    "paper",
    "difference",
    "backdoored (ours / paper)",
    "seeds",
    "reading",
    "evidence",
]


def far_table(rows: Sequence[FarRow]) -> str:
    """The rows as a Markdown table (:data:`FAR_HEADER`; points, one decimal); empty
    without rows."""
    if not rows:
        return ""
    body = []
    for row in rows:
        seeds = sorted({r.get("seed") for r in row.cell.runs}, key=str)
        body.append(
            [
                *row.cell.labels,
                row.cell.title,
                row.measure.value,
                num(row.ours, 1),
                num(row.paper, 1),
                num(row.difference, 1, signed=True),
                f"{num(row.backdoored, 1)} / {num(row.paper_backdoored, 1)}",
                ", ".join(str(s) for s in seeds),
                _reading(row),
                evidence(row.cell.baseline, row.cell.runs),
            ]
        )
    return markdown_table(FAR_HEADER, body)


def _reading(row: FarRow) -> str:
    if row.why is None:
        return row.reading.value
    return f"{row.reading.value} ({row.why}; the figures alone: {row.then})"


def far_summary(rows: Sequence[FarRow]) -> dict[str, str]:
    """Template values of the summary line: ``far_cells`` (distinct cells with a far
    measure), ``far_asr`` and ``far_acc`` (far rows per measure), and ``far_asr_readings``
    and ``far_acc_readings`` (``reading n, ...`` in rule order, readings with no row left
    out; ``none`` without rows)."""
    counts = Counter((row.measure, row.reading) for row in rows)

    def listed(measure: Measure, readings: list[Reading]) -> str:
        found = [(r, counts[measure, r]) for r in readings if counts[measure, r]]
        return ", ".join(f"{r.value} {n}" for r, n in found) or "none"

    return {
        "far_cells": str(len({id(row.cell) for row in rows})),
        "far_asr": str(sum(row.measure is Measure.ASR for row in rows)),
        "far_acc": str(sum(row.measure is Measure.ACC for row in rows)),
        "far_asr_readings": listed(Measure.ASR, ASR_READINGS),
        "far_acc_readings": listed(Measure.ACC, ACC_READINGS),
        "far_limit": f"{FAR_POINTS:g}",
    }
