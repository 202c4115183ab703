"""Reports from records only: group runs, aggregate over seeds, format Markdown tables, and
put a paper's published column beside ours."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from gnnbackdoor.errors import UserError
from gnnbackdoor.experiments.records import dotted, record_threads
from gnnbackdoor.registry import normalise_name

GROUP_FIELDS = ("task", "dataset", "model", "attack", "defense")

PREFERRED_METRICS = (
    "clean_auc",
    "clean_acc",
    "backdoored_auc",
    "backdoored_acc",
    "bpd",
    "asr",
    "amc",
    "clean_model_asr",
    "no_trigger_rate",
    "defended_acc",
    "defended_asr",
)

#: Metrics that are not fractions (shown as they are, not in points).
_NOT_FRACTION_SUFFIXES = ("_s", "_epochs", "queries", "_graphs", "_count")


def is_fraction(metric: str) -> bool:
    """Whether ``metric`` is a fraction (shown x100, in points)."""
    return not (metric.endswith(_NOT_FRACTION_SUFFIXES) or metric.startswith("num_"))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), ignoring NaN."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return float("nan"), float("nan")
    mean = sum(clean) / len(clean)
    if len(clean) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in clean) / (len(clean) - 1)
    return mean, math.sqrt(var)


def fmt(mean: float, std: float | None = None, scale: float = 1.0, digits: int = 2) -> str:
    """``"12.34 ± 0.56"`` (or ``"n/a"`` for NaN)."""
    if mean is None or math.isnan(mean):
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    if std is not None and not math.isnan(std):
        text += f" ± {std * scale:.{digits}f}"
    return text


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "+".join(_shown(v) for v in value)
    return str(value)


def settings_text(record: dict[str, Any]) -> str:
    """The settings a run changed from the defaults, ``key=value,...`` sorted by key, each
    value as the resolved config holds it (``0.10`` and ``.1`` typed both read ``0.1``);
    the typed text where the record keeps no config."""
    config = record.get("config") or {}
    parts = []
    for key, typed in sorted((record.get("overrides") or {}).items()):
        value = dotted(config, key)
        parts.append(f"{key}={typed if value is None else _shown(value)}")
    return ",".join(parts)


def group_key(record: dict[str, Any], fields: Sequence[str] = GROUP_FIELDS) -> tuple:
    return (*(record.get(f) or "-" for f in fields), settings_text(record))


def _split_by_threads(grouped: dict[tuple, list[dict]]) -> dict[tuple, list[dict]]:
    """Groups whose records were made at more than one thread count, split per count.

    The thread count is part of a run's key (the floats, and so early stopping, can differ
    with it), so one seed recorded at 1 and at 2 threads is two runs of two configurations,
    not two seeds of one. Each part's settings text gains ``runtime.threads=N`` (``?`` where a
    record does not say); a group made at one count keeps its settings text.
    """
    result: dict[tuple, list[dict]] = {}
    for key, runs in grouped.items():
        by_count: dict[int | None, list[dict]] = defaultdict(list)
        for record in runs:
            by_count[record_threads(record)].append(record)
        if len(by_count) == 1:
            result[key] = runs
            continue
        for count in sorted(by_count, key=lambda c: (c is None, c or 0)):
            shown = f"runtime.threads={'?' if count is None else count}"
            settings = f"{key[-1]},{shown}" if key[-1] else shown
            result[(*key[:-1], settings)] = by_count[count]
    return result


def aggregate(
    records: Iterable[dict[str, Any]], fields: Sequence[str] = GROUP_FIELDS
) -> dict[tuple, dict[str, Any]]:
    """``{group: {"n": seeds, "seeds": [...], "metrics": {name: (mean, std)}}}``.

    A group is (``fields``..., settings text); one whose records were made at several torch
    thread counts is split per count (see :func:`_split_by_threads`), so ``n`` counts runs of
    one configuration.
    """
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        grouped[group_key(record, fields)].append(record)
    grouped = _split_by_threads(grouped)
    result = {}
    for key, runs in grouped.items():
        names = sorted({m for r in runs for m in r.get("metrics", {})})
        result[key] = {
            "n": len(runs),
            "seeds": sorted(r.get("seed") for r in runs),
            "metrics": {
                m: mean_std([r["metrics"].get(m, float("nan")) for r in runs]) for m in names
            },
            "timings": {
                t: mean_std([r.get("timings", {}).get(t, float("nan")) for r in runs])
                for t in sorted({t for r in runs for t in r.get("timings", {})})
            },
        }
    return result


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- published tables -------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


#: Columns a ``--paper`` CSV must have: its rows are matched to ours on these (and on
#: ``attack`` and ``defense`` when present), by canonical name.
PAPER_KEY_COLUMNS = ("dataset", "model")


def check_paper_csv(path: Path, columns: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Read a ``--paper`` CSV and check it can be matched to records; returns its rows.

    The CSV has a header row; ``dataset`` and ``model`` (required) and ``attack``,
    ``defense`` (optional; ``-`` or empty for none) name the configuration, every other
    column is a published figure (``--paper-columns`` picks some; by default those whose
    first row is a number).

    Raises:
        UserError: missing or unreadable file, no rows, a key or requested column missing,
            no numeric column, or two rows for the same configuration.
    """
    try:
        rows = read_csv(path)
    except FileNotFoundError:
        raise UserError(f"--paper {path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"--paper {path}: cannot read it as CSV ({error})") from None
    if not rows:
        raise UserError(f"--paper {path} holds no rows")
    header = list(rows[0])
    missing = [c for c in (*PAPER_KEY_COLUMNS, *(columns or [])) if c not in header]
    if missing:
        raise UserError(
            f"--paper {path} lacks column(s) {', '.join(missing)}; it needs dataset, model "
            f"(and optionally attack, defense) plus figure columns; it has {', '.join(header)}"
        )
    keys = [c for c in ("dataset", "model", "attack", "defense") if c in header]
    if not columns and not any(c not in keys and _numeric(rows[0][c]) for c in header):
        raise UserError(f"--paper {path} has no numeric figure column besides {', '.join(keys)}")
    seen: set[tuple[str, ...]] = set()
    for number, row in enumerate(rows, start=2):
        key = tuple(canonical(row.get(c)) for c in keys)
        if key in seen:
            raise UserError(f"--paper {path} line {number} repeats the configuration {key}")
        seen.add(key)
    return rows


def reference_table(name: str) -> list[dict[str, str]]:
    """A published table shipped with the package (``experiments/reference/<name>``)."""
    resource = resources.files("gnnbackdoor.experiments") / "reference" / name
    if not resource.is_file():
        raise UserError(f"no reference table {name!r}")
    with resources.as_file(resource) as path:
        return read_csv(path)


#: Our names for the papers' spellings, matched after ``normalise_name``.
NAME_ALIASES = {
    "sub-ba": "sba",
    "motif": "motif-ba",
    "cora-ml": "cora-ml-lcc",  # Link-Backdoor's Cora_ML is the largest component (2,810 nodes)
    "graphprot-r": "graphprot-r",
}


def canonical(value: str | None) -> str:
    key = normalise_name(value or "-")
    return NAME_ALIASES.get(key, key)


def paper_lookup(
    rows: list[dict[str, str]], key_columns: Sequence[str]
) -> Callable[..., dict[str, str] | None]:
    """A function ``(**keys) -> row`` matching rows on ``key_columns`` by canonical name."""
    index = {tuple(canonical(r.get(c)) for c in key_columns): r for r in rows}

    def lookup(**keys: str | None) -> dict[str, str] | None:
        return index.get(tuple(canonical(keys.get(c)) for c in key_columns))

    return lookup


def generic_report(
    records: list[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    paper_csv: Path | None = None,
    paper_columns: Sequence[str] | None = None,
) -> str:
    """One row per (task, dataset, model, attack, defense, settings): the mean over seeds
    (``± std`` only with two or more seeds), in points for fractions; optionally the
    matching paper row's numeric columns beside."""
    if not records:
        raise UserError("no records found")
    groups = aggregate(records)
    all_metrics = {m for g in groups.values() for m in g["metrics"]}
    # by default the metrics every pipeline defines; component-specific extras on request
    chosen = list(metrics) if metrics else [m for m in PREFERRED_METRICS if m in all_metrics]
    lookup = None
    paper_cols: list[str] = []
    if paper_csv is not None:
        rows = check_paper_csv(paper_csv, paper_columns)
        keys = [c for c in ("dataset", "model", "attack", "defense") if c in rows[0]]
        paper_cols = (
            list(paper_columns)
            if paper_columns
            else [c for c in rows[0] if c not in keys and _numeric(rows[0][c])]
        )
        lookup = paper_lookup(rows, keys)
    header = ["dataset", "model", "attack", "defense", "settings", "seeds"]
    header += [f"{m} (%)" if is_fraction(m) else m for m in chosen]
    header += [f"paper {c}" for c in paper_cols]
    body = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        group = groups[key]
        _task, dataset, model, attack, defense, overrides = key
        row = [dataset, model, attack, defense, overrides or "-", group["n"]]
        for m in chosen:
            mean, std = group["metrics"].get(m, (float("nan"), float("nan")))
            shown_std = std if group["n"] >= 2 else None
            row.append(fmt(mean, shown_std, 100.0 if is_fraction(m) else 1.0))
        if lookup is not None:
            paper = lookup(dataset=dataset, model=model, attack=attack, defense=defense)
            row += [paper.get(c, "") if paper else "" for c in paper_cols]
        body.append(row)
    return markdown_table(header, body)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True
