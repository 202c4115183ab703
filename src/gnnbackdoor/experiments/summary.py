"""The compact summary of ``gnnbackdoor report DIR`` (from records only): per task, what each
attack did and what each defense did at what cost, a glossary line per metric shown, and a
short plain-language account (``--account``, what ``make demo`` ends with).

A row is one group of records with the same (task, dataset, model, attack, defense, settings);
figures are means over its seeds, with ``±`` (sample standard deviation) only when two or more
seeds stand behind them. Markdown shows fractions in points (%); CSV and JSON carry them as
fractions (0 to 1), rounded to 6 decimals.

On a large folder the summary stays compact: per (task, dataset, model, attack, defense) it
shows only the main configuration (:func:`main_configurations`), says how many others exist,
and ``--wide`` shows them all. Where a folder holds defended runs but no undefended run of
the same attack, the attack table is built from the defended runs' own backdoored and clean
figures (every defended record carries them).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gnnbackdoor.errors import UserError
from gnnbackdoor.experiments.records import record_threads
from gnnbackdoor.experiments.report import aggregate, fmt, markdown_table, settings_text

#: Decimals kept for fractions in CSV and JSON (drops float noise such as 0.9941176176071167).
FLAT_DECIMALS = 6

#: Metrics of a defended record that describe the attack before any defense (the attack
#: table's figures when no undefended run exists).
_BEFORE_METRICS = (
    "clean_acc",
    "backdoored_acc",
    "clean_auc",
    "backdoored_auc",
    "asr",
    "clean_model_asr",
    "no_trigger_rate",
    "bpd",
    "amc",
    "num_classes",
)


class Format(Enum):
    """Output formats of ``gnnbackdoor report``."""

    MD = "md"
    CSV = "csv"
    JSON = "json"


#: One line per metric a summary may show (shown only for the metrics in the tables).
GLOSSARY = {
    "acc": "acc: accuracy on clean test graphs (attacks: clean model → backdoored model; "
    "defenses: before → after the defense).",
    "auc": "AUC: area under the ROC curve of link prediction on clean test links "
    "(clean model → backdoored model).",
    "bpd": "BPD (benign performance drop): clean-model AUC minus backdoored-model AUC, in "
    "points; what the backdoor costs on clean inputs (Link-Backdoor Sec. 5.1.3).",
    "asr": "ASR (attack success rate): share of triggered inputs that get the attacker's "
    "answer (graphs: the target class, counted on graphs of other classes; links: target "
    "links the clean model predicts absent that the backdoored model predicts present).",
    "clean_model_asr": "clean-model ASR: the same triggered inputs given to the clean model; "
    "what the trigger does without the backdoor.",
    "no_trigger_rate": "no-trigger rate: share of those target links the backdoored model "
    "already predicts present without the trigger; the floor to read ASR against.",
    "amc": "AMC (average misclassification confidence): the backdoored model's mean "
    "probability on the successful target links.",
    "defended_asr": "ASR after: ASR with the defense in place (shield in front, or repaired "
    "model).",
    "floor": "floor: the shield's no-trigger rate: share of clean graphs of other classes it "
    "already answers with the target class; ASR after cannot meaningfully fall below it.",
    "defended_acc": "acc after: accuracy on clean test graphs with the defense in place.",
    "cost": "cost: accuracy points lost to the defense (before → after), its run time, and "
    "for a shield the model queries per graph answered.",
}


@dataclass
class Row:
    """One summary row: identity, number of seeds and ``{metric: (mean, std)}``."""

    kind: str  # "attack" | "defense" | "clean"
    task: str
    dataset: str
    model: str
    attack: str | None
    defense: str | None
    settings: str
    seeds: int
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: An attack row built from defended runs (no undefended run of it in the records).
    from_defended: bool = False

    @property
    def identity(self) -> tuple:
        """(kind, task, dataset, model, attack, defense): a row without its settings."""
        return (self.kind, self.task, self.dataset, self.model, self.attack, self.defense)

    @property
    def setting_count(self) -> int:
        return len([p for p in self.settings.split(",") if p])

    def mean(self, name: str) -> float:
        return self.metrics.get(name, (math.nan, math.nan))[0]

    def cell(self, name: str) -> str:
        """``"97.3"`` or ``"97.3 ± 1.2"`` (points; ``±`` with two or more seeds)."""
        mean, std = self.metrics.get(name, (math.nan, math.nan))
        return points(mean, std if self.seeds >= 2 else None)

    def arrow(self, before: str, after: str) -> str:
        left, right = self.cell(before), self.cell(after)
        if right == "—":
            return left
        return f"{left} → {right}"


def points(mean: float, std: float | None = None) -> str:
    """``mean`` (a fraction) in points with one decimal, ``± std`` when given; ``"—"`` for a
    missing value."""
    if mean is None or math.isnan(mean):
        return "—"
    return fmt(mean, std, scale=100, digits=1)


def _without_defense(record: dict[str, Any]) -> dict[str, Any]:
    """A defended record read as its attack run: no defense, no ``defense.*`` settings, only
    the before-defense metrics."""
    overrides = {
        k: v for k, v in (record.get("overrides") or {}).items() if not k.startswith("defense.")
    }
    metrics = {k: v for k, v in record.get("metrics", {}).items() if k in _BEFORE_METRICS}
    return {**record, "defense": None, "overrides": overrides, "metrics": metrics, "timings": {}}


def _rows_of(groups: dict[tuple, dict[str, Any]], from_defended: bool = False) -> list[Row]:
    rows = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        task, dataset, model, attack, defense, settings = key
        attack = None if attack == "-" else attack
        defense = None if defense == "-" else defense
        group = groups[key]
        kind = "defense" if defense else "attack" if attack else "clean"
        rows.append(
            Row(
                kind,
                task,
                dataset,
                model,
                attack,
                defense,
                settings,
                group["n"],
                dict(group["metrics"]),
                dict(group["timings"]),
                from_defended,
            )
        )
    return rows


def build_rows(records: list[dict[str, Any]]) -> list[Row]:
    """Summary rows of ``records``: attack groups, defense groups, and clean groups that no
    attack group of the same (task, dataset, model) covers.

    An attack with defended runs but no undefended run of the same (task, dataset, model,
    attack) gets attack rows built from the defended records' before-defense metrics (one
    record per seed and settings, so a seed defended five ways counts once).
    """
    if not records:
        raise UserError("no records found")
    rows = _rows_of(aggregate(records))
    attacked = {(r.task, r.dataset, r.model, r.attack) for r in rows if r.kind == "attack"}
    derived: dict[tuple, dict[str, Any]] = {}
    for record in records:
        if not (record.get("defense") and record.get("attack")):
            continue
        if (record["task"], record["dataset"], record["model"], record["attack"]) in attacked:
            continue
        plain = _without_defense(record)
        key = (record["task"], record["dataset"], record["model"], record["attack"])
        identity = (*key, settings_text(plain), record_threads(plain), record.get("seed"))
        derived.setdefault(identity, plain)
    if derived:
        rows += _rows_of(aggregate(derived.values()), from_defended=True)
    covered = {(r.task, r.dataset, r.model) for r in rows if r.kind != "clean"}
    return [r for r in rows if r.kind != "clean" or (r.task, r.dataset, r.model) not in covered]


def main_configurations(rows: Sequence[Row]) -> tuple[list[Row], int]:
    """Per (kind, task, dataset, model, attack, defense), the row of its main configuration:
    the one with the most seeds, then the fewest settings changed, then the first by name;
    and how many rows (other configurations) are left out. Order is kept."""
    best: dict[tuple, Row] = {}
    for row in rows:
        held = best.get(row.identity)
        rank = (-row.seeds, row.setting_count, row.settings)
        if held is None or rank < (-held.seeds, held.setting_count, held.settings):
            best[row.identity] = row
    kept = {id(r) for r in best.values()}
    shown = [r for r in rows if id(r) in kept]
    return shown, len(rows) - len(shown)


def _common_settings(rows: Sequence[Row]) -> tuple[str, list[str]]:
    """Settings shared by every row (shown once) and each row's own remaining settings."""
    parts = [set(filter(None, r.settings.split(","))) for r in rows]
    common = set.intersection(*parts) if parts else set()
    return ",".join(sorted(common)), [",".join(sorted(p - common)) for p in parts]


def _cost(row: Row) -> str:
    bits = []
    before, after = row.mean("backdoored_acc"), row.mean("defended_acc")
    if math.isnan(before):
        before = row.mean("clean_acc")
    if not (math.isnan(before) or math.isnan(after)):
        bits.append(f"{100 * (after - before):+.1f} pts acc")
    seconds = row.seconds.get("defense_s", (math.nan, math.nan))[0]
    if not math.isnan(seconds):
        bits.append(f"{seconds:.1f} s")
    queried = row.mean("queried_graphs")
    answered = (0 if math.isnan(row.mean("num_eval_graphs")) else row.mean("num_eval_graphs")) + (
        0 if math.isnan(row.mean("num_triggered")) else row.mean("num_triggered")
    )
    if not math.isnan(queried) and answered:
        bits.append(f"{queried / answered:.1f} queries/graph")
    return ", ".join(bits) or "—"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    glossary: list[str]
    note: str = ""
    footnotes: list[str] = field(default_factory=list)


def _hidden_note(count: int) -> str:
    return (
        f"{count} other configuration(s) of these groups not shown (the main one per group: "
        "most seeds, fewest settings changed); `--wide` shows them all."
        if count
        else ""
    )


def held_out(row: Row) -> tuple[float, float] | None:
    """``(scored, held)``: the evaluation graphs a defense row is scored on and the test graphs
    its defender held out (means over seeds), or ``None`` when it holds none out."""
    held = row.mean("num_defender_graphs")
    scored = row.mean("num_eval_graphs")
    if math.isnan(held) or held <= 0 or math.isnan(scored):
        return None
    return scored, held


def _held_out_notes(rows: Sequence[Row]) -> tuple[dict[int, str], list[str]]:
    """Marks and footnotes for defense rows scored on fewer evaluation graphs than the test
    set: a defender that holds out a share of it (GCleaner) scores before and after on the
    graphs it did not hold out, so its before-figures differ from other rows'."""
    marks: dict[int, str] = {}
    notes: list[str] = []
    for row in rows:
        counts = held_out(row)
        if counts is None:
            continue
        scored, held = counts
        marks[id(row)] = "*"
        note = (
            f"* {row.defense} on {row.dataset}/{row.model}: before and after scored on the "
            f"{scored:.0f} evaluation graphs the defender did not hold out ({held:.0f} held "
            "out for it), so its before-figures differ from rows scored on the whole test set."
        )
        if note not in notes:
            notes.append(note)
    return marks, notes


def _tables(rows: list[Row]) -> list[Table]:
    tables: list[Table] = []
    for task in sorted({r.task for r in rows}):
        mine, hidden = main_configurations(
            [r for r in rows if r.task == task and r.kind != "defense"]
        )
        score = "auc" if task == "link" else "acc"
        if mine:
            common, own = _common_settings(mine)
            header = ["dataset", "model", "attack", "seeds", f"{score.upper()} (%)"]
            header += ["ASR (%)", "clean-model ASR (%)"]
            extra = ["no_trigger_rate", "bpd", "amc"] if task == "link" else []
            names = {"no_trigger_rate": "no-trigger rate (%)", "bpd": "BPD", "amc": "AMC (%)"}
            header += [names[m] for m in extra]
            if any(own):
                header.append("settings")
            body = []
            for row, settings in zip(mine, own, strict=True):
                attack = (row.attack or "none") + (" †" if row.from_defended else "")
                cells = [row.dataset, row.model, attack, str(row.seeds)]
                cells.append(row.arrow(f"clean_{score}", f"backdoored_{score}"))
                cells += [row.cell("asr"), row.cell("clean_model_asr")]
                cells += [row.cell(m) for m in extra]
                if any(own):
                    cells.append(settings or "-")
                body.append(cells)
            shown = [score, "asr", "clean_model_asr", *extra]
            footnotes = [_hidden_note(hidden)] if hidden else []
            if any(r.from_defended for r in mine):
                footnotes.append(
                    "† no undefended run of this attack in the records: its figures are the "
                    "defended runs' own before-defense figures (one per seed)."
                )
            tables.append(
                Table(
                    f"{task}: attacks",
                    header,
                    body,
                    [GLOSSARY[m] for m in shown],
                    f"every run: {common}" if common else "",
                    footnotes,
                )
            )
        defended, hidden = main_configurations(
            [r for r in rows if r.task == task and r.kind == "defense"]
        )
        if defended:
            common, own = _common_settings(defended)
            marks, held_notes = _held_out_notes(defended)
            header = ["dataset", "model", "attack", "defense", "seeds", "ASR (%)"]
            header += ["floor (%)", "acc (%)", "cost"]
            if any(own):
                header.append("settings")
            body = []
            for row, settings in zip(defended, own, strict=True):
                before_acc = "backdoored_acc" if row.attack else "clean_acc"
                defense = (row.defense or "-") + (f" {marks[id(row)]}" if id(row) in marks else "")
                cells = [row.dataset, row.model, row.attack or "none", defense]
                cells += [str(row.seeds), row.arrow("asr", "defended_asr")]
                cells += [row.cell("defended_target_no_trigger")]
                cells += [row.arrow(before_acc, "defended_acc"), _cost(row)]
                if any(own):
                    cells.append(settings or "-")
                body.append(cells)
            shown = ["asr", "acc", "defended_asr", "floor", "defended_acc", "cost"]
            tables.append(
                Table(
                    f"{task}: defenses (before → after)",
                    header,
                    body,
                    [GLOSSARY[m] for m in shown],
                    f"every run: {common}" if common else "",
                    ([_hidden_note(hidden)] if hidden else []) + held_notes,
                )
            )
    return tables


def summary_report(records: list[dict[str, Any]], fmt: Format = Format.MD) -> str:
    """The compact summary in ``fmt``.

    Markdown: one table per task and kind (attacks; defenses), a note of the settings every
    run of a table shares, and the glossary of the metrics shown. CSV and JSON: one row/object
    per group (every configuration) with every metric's mean (``name``) and, with two or more
    seeds, its standard deviation (``name_std``), fractions as fractions (0 to 1, rounded to
    :data:`FLAT_DECIMALS`), not points.

    Raises:
        UserError: no records.
    """
    rows = build_rows(records)
    if fmt is Format.MD:
        parts = []
        glossary: list[str] = []
        for table in _tables(rows):
            parts.append(f"### {table.title}\n")
            if table.note:
                parts.append(f"{table.note}\n")
            parts.append(markdown_table(table.header, table.rows) + "\n")
            if table.footnotes:
                parts.append("\n".join(table.footnotes) + "\n")
            glossary += [g for g in table.glossary if g not in glossary]
        parts.append("Glossary:\n" + "\n".join(f"- {g}" for g in glossary) + "\n")
        return "\n".join(parts)
    return flat_report([_flat(r) for r in rows], fmt)


def _flat(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": row.kind,
        "task": row.task,
        "dataset": row.dataset,
        "model": row.model,
        "attack": row.attack,
        "defense": row.defense,
        "settings": row.settings,
        "seeds": row.seeds,
    }
    for name, (mean, std) in sorted(row.metrics.items()):
        out[name] = _flat_number(mean)
        if row.seeds >= 2:
            out[f"{name}_std"] = _flat_number(std)
    if "defense_s" in row.seconds:
        out["defense_s"] = row.seconds["defense_s"][0]
    return out


def _flat_number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, FLAT_DECIMALS)


def flat_report(rows: list[dict[str, Any]], fmt: Format) -> str:
    """``rows`` (flat dicts) as CSV (union of columns, first-seen order) or JSON."""
    if fmt is Format.JSON:
        return json.dumps(rows, indent=2, allow_nan=False, default=str) + "\n"
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def wide_rows(
    records: list[dict[str, Any]], metrics: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Every group with every metric, or only ``metrics`` (the ``--wide`` table as flat
    rows; fractions as fractions, rounded to :data:`FLAT_DECIMALS`)."""
    if not records:
        raise UserError("no records found")
    out = []
    groups = aggregate(records)
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        task, dataset, model, attack, defense, settings = key
        group = groups[key]
        row: dict[str, Any] = {
            "task": task,
            "dataset": dataset,
            "model": model,
            "attack": None if attack == "-" else attack,
            "defense": None if defense == "-" else defense,
            "settings": settings,
            "seeds": group["n"],
        }
        for name, (mean, std) in group["metrics"].items():
            if metrics and name not in metrics:
                continue
            row[name] = _flat_number(mean)
            if group["n"] >= 2:
                row[f"{name}_std"] = _flat_number(std)
        out.append(row)
    return out


# --- the plain-language account ----------------------------------------------------------------

#: A defense whose accuracy is within this many points of chance (1 / classes) "falls to chance".
CHANCE_MARGIN = 0.05


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.0f} %"


def _who(row: Row) -> str:
    return f"{row.dataset}/{row.model.upper()}"


def account(records: list[dict[str, Any]]) -> list[str]:
    """What happened, in plain words: one sentence per attack and per defense (from records).

    Says when a trigger fools the clean model as much as the backdoored one (for
    Link-Backdoor expected: its Eq. 4 optimises the trigger on the clean, pre-trained model),
    gives each shield's floor (its no-trigger rate) and says when a defense's accuracy falls
    to chance (within :data:`CHANCE_MARGIN` of 1 / number of classes).
    """
    rows = build_rows(records)
    lines = []
    datasets = sorted({r.dataset for r in rows})
    seeds = sorted({int(r["seed"]) for r in records if r.get("seed") is not None})
    lines.append(
        f"{len(records)} run(s) on {', '.join(datasets)}, seed(s) {', '.join(map(str, seeds))}."
    )
    order = {"clean": 0, "attack": 1, "defense": 2}
    for row in sorted(rows, key=lambda r: (r.task, r.dataset, r.model, order[r.kind])):
        if row.kind == "clean":
            score = "AUC" if row.task == "link" else "accuracy"
            key = "clean_auc" if row.task == "link" else "clean_acc"
            lines.append(f"Clean {_who(row)}: {score} {_pct(row.mean(key))}.")
        elif row.kind == "attack":
            lines.append(_attack_sentence(row))
        else:
            lines.append(_defense_sentence(row))
    return lines


def _attack_sentence(row: Row) -> str:
    asr, on_clean = row.mean("asr"), row.mean("clean_model_asr")
    if row.task == "link":
        floor = row.mean("no_trigger_rate")
        text = (
            f"{row.attack} on {_who(row)}: AUC {_pct(row.mean('clean_auc'))} → "
            f"{_pct(row.mean('backdoored_auc'))}; the trigger makes the backdoored model "
            f"predict {_pct(asr)} of the target links the clean model calls absent."
        )
        if not math.isnan(on_clean) and on_clean >= asr - 0.05:
            text += (
                f" It fools the clean model as well ({_pct(on_clean)}): expected, since the "
                "paper's Eq. 4 optimises the trigger against the clean model's predictions; "
                f"read ASR against the no-trigger rate ({_pct(floor)}), the floor: links the "
                "backdoored model predicts present without any trigger."
            )
        else:
            text += (
                f" The clean model with the same trigger: {_pct(on_clean)}; "
                f"without a trigger the backdoored model predicts {_pct(floor)}."
            )
        return text
    return (
        f"{row.attack} on {_who(row)}: accuracy {_pct(row.mean('clean_acc'))} → "
        f"{_pct(row.mean('backdoored_acc'))}; triggered graphs get the target class from the "
        f"backdoored model {_pct(asr)} of the time, from the clean model {_pct(on_clean)}."
    )


def _defense_sentence(row: Row) -> str:
    before_acc = row.mean("backdoored_acc") if row.attack else row.mean("clean_acc")
    after_acc = row.mean("defended_acc")
    if row.attack:
        text = (
            f"{row.defense} against {row.attack} on {_who(row)}: ASR "
            f"{_pct(row.mean('asr'))} → {_pct(row.mean('defended_asr'))}, accuracy "
            f"{_pct(before_acc)} → {_pct(after_acc)}"
        )
    else:
        text = (
            f"{row.defense} on the clean {_who(row)} (no attack): accuracy "
            f"{_pct(before_acc)} → {_pct(after_acc)}"
        )
    seconds = row.seconds.get("defense_s", (math.nan, math.nan))[0]
    text += f" ({seconds:.1f} s)." if not math.isnan(seconds) else "."
    floor = row.mean("defended_target_no_trigger")
    if not math.isnan(floor):
        text += (
            f" Its floor, the ASR it would score with no trigger at all (clean graphs of "
            f"other classes it labels with the target class), is {_pct(floor)}; read ASR "
            "after against it."
        )
    classes = row.mean("num_classes")
    if not math.isnan(classes) and classes >= 2 and not math.isnan(after_acc):
        chance = 1.0 / classes
        if after_acc <= chance + CHANCE_MARGIN:
            text += (
                f" Its accuracy is at chance ({_pct(chance)} for {int(classes)} classes): "
                "the defended model no longer classifies"
            )
            text += ", so its low ASR is no success." if row.attack else "."
    return text
