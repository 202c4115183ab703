"""Helpers shared by reproduction pages: select records by their resolved configuration,
format cells, and describe where a page's numbers come from."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gnnbackdoor.experiments.report import fmt, mean_std

#: Fields of a record itself (not of its configuration) that selections may name.
RECORD_FIELDS = ("task", "dataset", "model", "attack", "defense", "seed")

#: Library defaults of settings that older records predate (their ``config`` lacks the field,
#: so the run used the default). Used only when a record's configuration has no such field.
LEGACY_DEFAULTS: dict[str, Any] = {
    "attack.poison_validation": False,
    "data.node_attributes": False,
    "train.subgraph_augmentation": 0.0,
}

_MISSING = object()


def resolved(record: Mapping[str, Any], path: str, default: Any = _MISSING) -> Any:
    """The value of ``path`` in ``record``: a record field (``"dataset"``, ``"seed"``, ...)
    or a dotted path into the resolved configuration (``"attack.target_class"`` reads
    ``record["config"]["attack"]["target_class"]``; nested sections nest further).

    A path the configuration lacks gives ``default`` when one is passed, else the
    :data:`LEGACY_DEFAULTS` entry, else ``None``. Never reads ``record["overrides"]`` (the
    text a user typed), so equivalent runs select alike.
    """
    if path in RECORD_FIELDS:
        return record.get(path)
    node: Any = record.get("config") or {}
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not _MISSING:
                return default
            return LEGACY_DEFAULTS.get(path)
        node = node[part]
    return node


def same(a: Any, b: Any) -> bool:
    """Equality of configuration values: numbers by value (``1 == 1.0``), everything else
    exactly (``True`` is not ``1``, ``None`` only equals ``None``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def matches(record: Mapping[str, Any], criteria: Mapping[str, Any]) -> bool:
    """Whether every ``path: value`` of ``criteria`` holds for ``record`` (see
    :func:`resolved`; a tuple or set value means any of its members)."""
    for path, wanted in criteria.items():
        value = resolved(record, path)
        options = wanted if isinstance(wanted, tuple | set | frozenset) else (wanted,)
        if not any(same(value, option) for option in options):
            return False
    return True


def where(
    records: Iterable[dict[str, Any]],
    criteria: Mapping[str, Any] | None = None,
    /,
    **fields: Any,
) -> list[dict[str, Any]]:
    """Records matching ``criteria`` (dotted configuration paths, e.g.
    ``where(records, {"attack.target_class": 1})``) and ``fields`` (record fields, e.g.
    ``dataset="AIDS"``; ``attack=None`` matches a run without an attack)."""
    wanted = {**(criteria or {}), **fields}
    return [r for r in records if matches(r, wanted)]


def differs(record: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """The paths of ``settings`` whose value in ``record`` is another one (a path the
    record's configuration lacks does not differ: the component has no such setting)."""
    return [
        path
        for path, value in settings.items()
        if not same(resolved(record, path, default=value), value)
    ]


def shown(value: Any) -> str:
    """A configuration value as a page shows it (``True`` -> ``"true"``, ``0.5`` -> ``"0.5"``,
    ``None`` -> ``"none"``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cell(records: list[dict[str, Any]], metric: str, scale: float = 100.0) -> tuple[str, float]:
    """``("mean ± std (n)", mean)`` of ``metric`` over ``records`` (all of them: a page has
    already selected the runs of one cell); ``("—", nan)`` if none."""
    if not records:
        return "—", float("nan")
    mean, std = mean_std([r.get("metrics", {}).get(metric, float("nan")) for r in records])
    return f"{fmt(mean, std, scale)} ({len(records)})", mean * scale


def paper_value(row: dict[str, str] | None, column: str) -> float:
    """A published figure of a reference-table row (NaN when the row or cell is empty)."""
    if not row or row.get(column) in (None, ""):
        return float("nan")
    return float(row[column])


def num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals (``"—"`` for a missing value)."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def provenance(records: list[dict[str, Any]]) -> dict[str, str]:
    """Template values describing ``records``: ``records`` (how many), ``commits``,
    ``torch`` and ``torch_geometric`` (the versions that made them, comma-separated) and
    ``threads`` (a sentence giving the torch thread counts the runs used, from
    ``config.runtime.threads``: every figure of a trained model depends on it) and
    ``machines`` (a sentence counting the records per machine, from ``versions.cpu``,
    ``torch_cpu_capability``, ``cpu_flags`` and ``numerics_env``: the same code and seed give
    other floats on another CPU; records made before those fields existed count as "not
    recorded")."""

    def versions(name: str) -> str:
        return ", ".join(sorted({r.get("versions", {}).get(name, "?") for r in records}))

    def threads(record: dict[str, Any]) -> str:
        count = (record.get("config") or {}).get("runtime", {}).get("threads")
        return "?" if count is None else str(count)

    counts = Counter(threads(r) for r in records)
    spread = ", ".join(f"{n} with {t}" for t, n in sorted(counts.items()))
    machines = Counter(_machine(r.get("versions") or {}) for r in records)
    on = "; ".join(f"{n} {label}" for label, n in sorted(machines.items()))
    return {
        "records": str(len(records)),
        "commits": versions("git_commit"),
        "torch": versions("torch"),
        "torch_geometric": versions("torch_geometric"),
        "threads": (
            f"Torch threads per run (`config.runtime.threads`): {spread}. Every figure measured "
            "on a trained model (accuracies, AUCs, ASRs, losses) depends on the thread count "
            "through the order of floating-point sums, so it is part of each record's key; "
            "dataset counts and the papers' columns do not."
        ),
        "machines": (
            f"Machines (`versions`: `cpu`, `torch_cpu_capability`, `cpu_flags`): {on}. The same "
            "code, seed and thread count give other floats on another CPU (MKL and ATen pick "
            "kernels by instruction set), so a record re-measured on another machine is not "
            "expected to match bit for bit (`results/archive/README.md`)."
        ),
    }


def _machine(versions: Mapping[str, Any]) -> str:
    """A record's machine in words: "on CPU, CAPABILITY, flags DIGEST" (plus the numerics
    variables that were set), or "with the machine not recorded"."""
    if "cpu" not in versions:
        return "with the machine not recorded"
    parts = [str(versions["cpu"]), str(versions.get("torch_cpu_capability", "?"))]
    if versions.get("cpu_flags"):
        parts.append(f"flags {versions['cpu_flags']}")
    parts += [f"{k}={v}" for k, v in sorted((versions.get("numerics_env") or {}).items())]
    return "on " + ", ".join(parts)


def unique(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` without repeats of the same record object, in first-seen order."""
    return list({id(r): r for r in records}.values())


def nested(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted settings as a nested configuration: ``{"attack.target_class": 1}`` ->
    ``{"attack": {"target_class": 1}}`` (the shape of ``record["config"]``)."""
    config: dict[str, Any] = {}
    for path, value in settings.items():
        *sections, field = path.split(".")
        node = config
        for section in sections:
            node = node.setdefault(section, {})
        node[field] = value
    return config


# --- which defense wins a row (issue 17's ranking tables) --------------------------------

#: Points of accuracy a defense may cost against the backdoored model and still win a row
#: on its ASR (:func:`winner`).
RANK_ACC_DROP = 5.0


@dataclass(frozen=True)
class Standing:
    """One defense's figures on one row, in points.

    Attributes:
        defense: The defense's title as the page shows it.
        asr: ASR after the defense.
        acc_drop: The backdoored model's accuracy minus the defended one's (positive: the
            defense costs accuracy).
        runs: Records averaged (0 for a paper's figure).
    """

    defense: str
    asr: float
    acc_drop: float
    runs: int = 0


def standing(defense: str, records: Sequence[Mapping[str, Any]]) -> Standing | None:
    """``defense``'s :class:`Standing` over ``records`` (one row's runs of it): means over
    the runs that carry ``defended_asr``, ``defended_acc`` and ``backdoored_acc`` (each run's
    drop against its own backdoored model); ``None`` when none does."""
    asrs, drops = [], []
    for r in records:
        m = r.get("metrics") or {}
        values = [m.get(k) for k in ("defended_asr", "defended_acc", "backdoored_acc")]
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            continue
        asr, after, before = (float(v) for v in values)
        asrs.append(asr * 100)
        drops.append((before - after) * 100)
    if not asrs:
        return None
    return Standing(defense, sum(asrs) / len(asrs), sum(drops) / len(drops), len(asrs))


def winner(standings: Iterable[Standing | None], limit: float = RANK_ACC_DROP):
    """The defense that wins a row: the lowest ASR among the defenses whose accuracy drop
    against the backdoored model is at most ``limit`` points; when none is, the lowest ASR
    of all. Ties go to the smaller drop, then to the first listed.

    Returns:
        ``(standing, within)``: the winner (``None`` without any figure) and whether it is
        within ``limit``.
    """
    usable = [
        s for s in standings if s is not None and not (math.isnan(s.asr) or math.isnan(s.acc_drop))
    ]
    if not usable:
        return None, False
    within = [s for s in usable if s.acc_drop <= limit + 1e-9]
    pool = within or usable
    best = min(pool, key=lambda s: (s.asr, s.acc_drop))
    return best, bool(within)


@dataclass
class RankRow:
    """One row of a ranking table.

    Attributes:
        labels: The row's identifying cells (dataset, model, attack).
        defenses: Titles of the defenses the paper compares on this row.
        ours: Our standings (a defense without records is absent).
        paper: The paper's standings.
        status: ``None`` when the row's attack implanted a non-collapsed backdoor in every
            run, else why not (such a row is shown but never counted in the agreement).
    """

    labels: list[str]
    defenses: list[str]
    ours: list[Standing]
    paper: list[Standing]
    status: str | None = None


def _won(best: Standing | None, within: bool, limit: float) -> str:
    if best is None:
        return "—"
    text = f"{best.defense} ({best.asr:.1f} / {best.acc_drop:+.1f})"
    return text if within else f"{text}, none within {limit:g}"


def ranking(rows: Sequence[RankRow], headers: Sequence[str], limit: float = RANK_ACC_DROP):
    """The ranking table (Markdown) and ``(agree, compared, rows)``: a row is *compared*
    when we have records of every defense the paper compares on it, the paper names a
    winner and the row's status is ``None``; ``agree`` counts the compared rows whose winner
    is the same. Winner cells read ``defense (ASR / accuracy drop)`` in points."""
    from gnnbackdoor.experiments.report import markdown_table

    body, agree, compared = [], 0, 0
    for row in rows:
        ours, ours_within = winner(row.ours, limit)
        theirs, theirs_within = winner(row.paper, limit)
        measured = {s.defense for s in row.ours}
        complete = all(d in measured for d in row.defenses)
        if not row.ours:
            verdict = "no records yet"
        elif not complete:
            have = len(measured & set(row.defenses))
            verdict = f"not compared: {have} of {len(row.defenses)} defenses measured"
        elif row.status is not None:
            verdict = f"not compared: {row.status}"
        elif theirs is None:
            verdict = "not compared: no paper figure"
        else:
            compared += 1
            same_winner = ours is not None and ours.defense == theirs.defense
            agree += same_winner
            verdict = "yes" if same_winner else "no"
        runs = ", ".join(f"{s.defense} {s.runs}" for s in row.ours) or "—"
        body.append(
            [
                *row.labels,
                runs,
                _won(ours, ours_within, limit),
                _won(theirs, theirs_within, limit),
                verdict,
            ]
        )
    header = [*headers, "runs per defense (ours)", "winner (ours)", "winner (paper)", "agree"]
    return markdown_table(header, body), (agree, compared, len(rows))
