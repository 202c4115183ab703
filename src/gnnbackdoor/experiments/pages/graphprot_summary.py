"""The GraphProt page's honest summaries (issue 14 items 5 and 6), as plain functions of
records and of the paper's rows, so that they are tested on small synthetic inputs.

* **Attack rows.** A (model, attack, dataset, target class, victim generation) of shielded
  runs: one record per seed for the figures measured before the shield, and the runs of each
  variant. A row is *averaged* when every one of its seeds implanted the backdoor
  (:func:`implanted`) without collapsing the backdoored model (:func:`collapsed`), with at
  least :data:`MIN_SEEDS` seeds; every other row is listed with its reason, never averaged.
* **Summary** over averaged (row, variant) entries: the mean relative ASR reduction
  (ASR\\ :sub:`backdoored` − ASR\\ :sub:`shielded`) / ASR\\ :sub:`backdoored`, the mean
  absolute reduction in points, the accuracy drops against the clean and against the
  backdoored model, and BackdoorBench's DER; the same definitions apply to the paper's rows
  (:func:`paper_entries`), whose implant test uses its *Clean Model* ASR.
* **Accuracy** of a clean victim behind GraphProt-R per sample rate p
  (:func:`accuracy_rows`), with the best operating point by :func:`best_rate`; a victim
  whose readout is not its model's registered one is a row of its own
  (:func:`victim_label`).

This module is no page of its own (it registers nothing); ``pages/graphprot.py`` renders it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gnnbackdoor.experiments.pages.common import matches, resolved
from gnnbackdoor.experiments.protocol import PROTOCOL_VICTIM
from gnnbackdoor.experiments.report import mean_std
from gnnbackdoor.metrics import backdoor_implanted, defense_effectiveness_rating
from gnnbackdoor.models.base import MODELS

VARIANTS = {
    "graphprot-r": "GraphProt-R",
    "graphprot-t": "GraphProt-T",
    "graphprot-tf": "GraphProt-TF",
}
#: Seeds a row needs to be averaged.
MIN_SEEDS = 3
#: Points: an operating point p is "within reach" when its shielded accuracy is at most this
#: far below the unshielded victim's (:func:`best_rate`).
ACCURACY_TOLERANCE = 2.0

NAN = float("nan")


def _metric(record: Mapping[str, Any], name: str) -> float:
    value = (record.get("metrics") or {}).get(name)
    return NAN if value is None else float(value)


def is_protocol_victim(record: Mapping[str, Any]) -> bool:
    """Whether ``record``'s victim is built as issue 14 builds it
    (:data:`~gnnbackdoor.experiments.protocol.PROTOCOL_VICTIM`); older records (``model.norm``
    ``"none"``) were trained before it."""
    return matches(record, PROTOCOL_VICTIM)


def implanted(record: Mapping[str, Any]) -> bool:
    """Whether the record's backdoor implanted: its ``backdoor_implanted`` field, or for
    records made before that field the same test
    (:func:`~gnnbackdoor.metrics.backdoor_implanted`: ASR ≥ 50 % and 20 points above the
    clean model's) on its ``asr`` and ``clean_model_asr``."""
    flag = _metric(record, "backdoor_implanted")
    if not math.isnan(flag):
        return bool(flag)
    return backdoor_implanted(_metric(record, "asr"), _metric(record, "clean_model_asr"))


def collapsed(record: Mapping[str, Any]) -> bool:
    """Whether the backdoored model collapsed (``backdoored_collapsed``; records made before
    that field carry none and count as not collapsed)."""
    flag = _metric(record, "backdoored_collapsed")
    return not math.isnan(flag) and bool(flag)


def record_der(record: Mapping[str, Any]) -> float:
    """The record's DER (``der``), else computed from its ASRs and accuracies
    (:func:`~gnnbackdoor.metrics.defense_effectiveness_rating`), as a fraction."""
    der = _metric(record, "der")
    if not math.isnan(der):
        return der
    return defense_effectiveness_rating(
        _metric(record, "asr"),
        _metric(record, "defended_asr"),
        _metric(record, "backdoored_acc"),
        _metric(record, "defended_acc"),
    )


def points(records: Sequence[Mapping[str, Any]], metric: str) -> float:
    """Mean of ``metric`` over ``records`` in points (``nan`` without a value)."""
    return mean_std([_metric(r, metric) for r in records])[0] * 100


@dataclass
class AttackRow:
    """The shielded runs of one (model, attack, dataset, target, victim generation)."""

    model: str
    attack: str
    dataset: str
    target: Any
    protocol_victim: bool
    by_variant: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[dict[str, Any]]:
        """One record per seed (the figures before the shield are the same in every
        variant's record of a seed)."""
        seen: dict[int, dict[str, Any]] = {}
        for runs in self.by_variant.values():
            for r in runs:
                seen.setdefault(r["seed"], r)
        return [seen[s] for s in sorted(seen)]

    def status(self) -> str | None:
        """``None`` when the row is averaged; else why not (one phrase)."""
        seeds = self.seeds
        n = len(seeds)
        if n < MIN_SEEDS:
            return f"{n} seed{'s' if n != 1 else ''} (fewer than {MIN_SEEDS})"
        down = sum(collapsed(r) for r in seeds)
        if down:
            return f"backdoored model collapsed in {down} of {n} seeds"
        done = sum(implanted(r) for r in seeds)
        if done < n:
            return f"implanted in {done} of {n} seeds"
        return None


def attack_rows(records: Iterable[dict[str, Any]]) -> list[AttackRow]:
    """Shielded records grouped into :class:`AttackRow`\\ s; where a (model, attack, dataset,
    target) has runs on issue 14's victims, its runs on older victims are left out."""
    groups: dict[tuple, AttackRow] = {}
    for r in records:
        if r.get("defense") not in VARIANTS:
            continue
        key = (
            r["model"],
            r["attack"],
            r["dataset"],
            resolved(r, "attack.target_class"),
            is_protocol_victim(r),
        )
        row = groups.setdefault(key, AttackRow(*key))
        row.by_variant.setdefault(r["defense"], []).append(r)
    newer = {k[:4] for k in groups if k[4]}
    return [row for k, row in groups.items() if k[4] or k[:4] not in newer]


@dataclass(frozen=True)
class Entry:
    """One (row, variant) of a summary, in points (``der`` in points too)."""

    variant: str
    backdoored_asr: float
    shielded_asr: float
    clean_acc: float
    backdoored_acc: float
    shielded_acc: float
    der: float = NAN
    pre_protocol: bool = False


def entries(rows: Iterable[AttackRow]) -> list[Entry]:
    """The summary entries of the averaged rows: one per variant with at least
    :data:`MIN_SEEDS` runs."""
    out = []
    for row in rows:
        if row.status() is not None:
            continue
        seeds = row.seeds
        for defense, title in VARIANTS.items():
            runs = row.by_variant.get(defense, [])
            if len(runs) < MIN_SEEDS:
                continue
            ders = [record_der(r) for r in runs]
            out.append(
                Entry(
                    title,
                    points(seeds, "asr"),
                    points(runs, "defended_asr"),
                    points(seeds, "clean_acc"),
                    points(seeds, "backdoored_acc"),
                    points(runs, "defended_acc"),
                    mean_std(ders)[0] * 100,
                    not row.protocol_victim,
                )
            )
    return out


@dataclass(frozen=True)
class Summary:
    """Means over entries (points; ``relative`` in %); ``rows``: entries averaged."""

    rows: int
    relative: float
    absolute: float
    drop_clean: float
    drop_backdoored: float
    der: float
    pre_protocol: int = 0


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else NAN


def summarize(items: Sequence[Entry]) -> Summary:
    """:class:`Summary` of ``items``: entries with any figure missing are skipped (the
    relative reduction also skips a backdoored ASR of 0, which an averaged row never has)."""
    full = [
        e
        for e in items
        if not any(
            math.isnan(v)
            for v in (
                e.backdoored_asr,
                e.shielded_asr,
                e.clean_acc,
                e.backdoored_acc,
                e.shielded_acc,
            )
        )
    ]
    return Summary(
        rows=len(full),
        relative=_mean(
            [
                (e.backdoored_asr - e.shielded_asr) / e.backdoored_asr * 100
                for e in full
                if e.backdoored_asr > 0
            ]
        ),
        absolute=_mean([e.backdoored_asr - e.shielded_asr for e in full]),
        drop_clean=_mean([e.clean_acc - e.shielded_acc for e in full]),
        drop_backdoored=_mean([e.backdoored_acc - e.shielded_acc for e in full]),
        der=_mean([e.der for e in full]),
        pre_protocol=sum(e.pre_protocol for e in full),
    )


@dataclass(frozen=True)
class PaperRow:
    """One (table block, dataset) of the paper: ``block`` is the Table 1 model (``"GCN"``)
    or the Table 2 attack (``"SBA"``); figures in points, per variant title."""

    block: str
    dataset: str
    backdoored_asr: float
    backdoored_acc: float
    clean_asr: float
    clean_acc: float
    shielded: dict[str, tuple[float, float]]

    @property
    def implanted(self) -> bool:
        """The record test on the paper's own figures (ASR ≥ 50 %, 20 points above its
        clean model's)."""
        return backdoor_implanted(self.backdoored_asr / 100, self.clean_asr / 100)

    def entries(self) -> list[Entry]:
        out = []
        for title in VARIANTS.values():
            asr, acc = self.shielded.get(title, (NAN, NAN))
            der = defense_effectiveness_rating(
                self.backdoored_asr / 100, asr / 100, self.backdoored_acc / 100, acc / 100
            )
            out.append(
                Entry(
                    title,
                    self.backdoored_asr,
                    asr,
                    self.clean_acc,
                    self.backdoored_acc,
                    acc,
                    der * 100,
                )
            )
        return out


def paper_rows(table: Iterable[Mapping[str, str]], block_column: str) -> list[PaperRow]:
    """The rows of one of the paper's tables (``block_column``: ``"model"`` for Table 1,
    ``"attack"`` for Table 2), one per (block, dataset) that has both undefended rows."""
    cells: dict[tuple[str, str], dict[str, tuple[float, float]]] = defaultdict(dict)
    for r in table:
        cells[(r[block_column], r["dataset"])][r["defense"]] = (float(r["asr"]), float(r["acc"]))
    out = []
    for (block, dataset), by_defense in cells.items():
        if "Backdoored Model" not in by_defense or "Clean Model" not in by_defense:
            continue
        bd, cl = by_defense["Backdoored Model"], by_defense["Clean Model"]
        shielded = {t: by_defense[t] for t in VARIANTS.values() if t in by_defense}
        out.append(PaperRow(block, dataset, bd[0], bd[1], cl[0], cl[1], shielded))
    return out


# --- GraphProt's accuracy on clean victims (issue 14 item 6) ---------------------------


def registered_readout(model: str) -> str | None:
    """The graph readout (``model.pool``) that model ``model`` is registered with, e.g.
    ``"sum"`` for GIN and ``"mean"`` for GCN; ``None`` for a model without one (or not
    registered)."""
    if model not in MODELS:
        return None
    default = getattr(MODELS.get(model), "pool", None)
    return None if default is None else str(getattr(default, "value", default))


def other_readout(record: Mapping[str, Any]) -> str | None:
    """The record's ``model.pool`` when it is not the one its model is registered with
    (:func:`registered_readout`), e.g. ``"mean"`` for a GIN; else ``None``."""
    pool = resolved(record, "model.pool")
    default = registered_readout(str(record["model"]))
    if pool is None or default is None:
        return None
    pool = str(getattr(pool, "value", pool))
    return None if pool == default else pool


def victim_label(record: Mapping[str, Any]) -> str:
    """The victim's name on the accuracy tables: the model's, with ``" (mean readout)"``
    (or the readout it used) added when the record's readout is not the registered one
    (:func:`other_readout`), so such a victim is a row of its own."""
    readout = other_readout(record)
    return record["model"] if readout is None else f"{record['model']} ({readout} readout)"


@dataclass
class AccuracyRow:
    """A clean victim (dataset, model, victim generation) behind GraphProt-R: the runs per
    sample rate p. ``model`` is the :func:`victim_label` (a readout other than the
    registered one is named), ``base_model`` the registered model's name and ``readout``
    the :func:`other_readout` (``None``: the registered one)."""

    dataset: str
    model: str
    protocol_victim: bool
    by_rate: dict[float, list[dict[str, Any]]] = field(default_factory=dict)
    base_model: str = ""
    readout: str | None = None

    def clean(self) -> tuple[float, float, int]:
        """The unshielded victim's accuracy: mean and std in points over seeds, seeds."""
        seen: dict[int, float] = {}
        for runs in self.by_rate.values():
            for r in runs:
                seen.setdefault(r["seed"], _metric(r, "clean_acc"))
        mean, std = mean_std(list(seen.values()))
        return mean * 100, std * 100, len(seen)

    def shielded(self, rate: float) -> tuple[float, float, int]:
        """Shielded accuracy at ``rate``: mean and std in points, runs."""
        runs = self.by_rate.get(rate, [])
        mean, std = mean_std([_metric(r, "defended_acc") for r in runs])
        return mean * 100, std * 100, len(runs)


def accuracy_rows(records: Iterable[dict[str, Any]]) -> list[AccuracyRow]:
    """Runs of GraphProt-R without an attack grouped by (dataset, victim, victim generation),
    sample rate p, the victim named by :func:`victim_label`; where issue 14's victims have
    runs, older victims' are left out."""
    groups: dict[tuple, AccuracyRow] = {}
    for r in records:
        if r.get("attack") is not None or r.get("defense") != "graphprot-r":
            continue
        key = (r["dataset"], victim_label(r), is_protocol_victim(r))
        row = groups.get(key)
        if row is None:
            row = groups[key] = AccuracyRow(*key, base_model=r["model"], readout=other_readout(r))
        rate = round(float(resolved(r, "defense.sample_rate", default=0.2)), 6)
        row.by_rate.setdefault(rate, []).append(r)
    newer = {k[:2] for k in groups if k[2]}
    return [row for k, row in groups.items() if k[2] or k[:2] not in newer]


def best_rate(
    clean: float, shielded: Mapping[float, float], tolerance: float = ACCURACY_TOLERANCE
) -> tuple[float | None, bool]:
    """The best operating point: the smallest p whose shielded accuracy (points) is within
    ``tolerance`` points of the unshielded ``clean`` accuracy, ``(p, True)``; if none is, the
    p with the highest shielded accuracy (the smallest such p on ties), ``(p, False)``;
    ``(None, False)`` without any figure."""
    known = {p: acc for p, acc in shielded.items() if not math.isnan(acc)}
    if not known:
        return None, False
    if not math.isnan(clean):
        within = [p for p, acc in known.items() if acc >= clean - tolerance - 1e-9]
        if within:
            return min(within), True
    best = max(known.values())
    return min(p for p, acc in known.items() if acc == best), False
