"""Helpers shared by reproduction pages: select records by their resolved configuration,
format cells, and describe where a page's numbers come from."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
    ``config.runtime.threads``: every figure of a trained model depends on it)."""

    def versions(name: str) -> str:
        return ", ".join(sorted({r.get("versions", {}).get(name, "?") for r in records}))

    counts: dict[str, int] = {}
    for record in records:
        threads = (record.get("config") or {}).get("runtime", {}).get("threads")
        label = "?" if threads is None else str(threads)
        counts[label] = counts.get(label, 0) + 1
    spread = ", ".join(f"{n} with {t}" for t, n in sorted(counts.items()))
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
    }


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
