"""``graphprot-ablations``: GraphProt's Fig. 3 ablations (subgraph number N, trigger size,
trigger pattern, sample rate p and feature fraction r) on AIDS with a GCN victim."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from gnnbackdoor.experiments.pages import page
from gnnbackdoor.experiments.pages.common import provenance, resolved, same, shown, unique
from gnnbackdoor.experiments.pages.graphprot import (
    PRE_PROTOCOL,
    PROTOCOL,
    VARIANTS,
    _ablated,
    _augmented,
    _per_seed,
    _stat,
    _target,
    _text,
)
from gnnbackdoor.experiments.pages.graphprot_summary import is_protocol_victim
from gnnbackdoor.experiments.pages.template import PageTemplate
from gnnbackdoor.experiments.report import markdown_table

DATASET, MODEL = "AIDS", "gcn"


@dataclass(frozen=True)
class Axis:
    """One panel of Fig. 3: the setting it varies (a dotted path into the records' resolved
    configuration) and the value the protocol runs use."""

    title: str
    attack: str
    key: str
    default: Any
    variants: tuple[str, ...] = tuple(VARIANTS)


AXES = [
    Axis("(a) Subgraph number N", "gta", "defense.num_subgraphs", 5),
    Axis("(b) Trigger size (GTA)", "gta", "attack.trigger_size", 5),
    Axis("(c) Trigger pattern (SBA)", "sba", "attack.pattern", "erdos_renyi"),
    Axis("(d) Sample rate p of GraphProt-R", "gta", "defense.sample_rate", 0.2, ("graphprot-r",)),
    Axis(
        "(d) Feature fraction r of GraphProt-TF",
        "gta",
        "defense.feature_fraction",
        0.8,
        ("graphprot-tf",),
    ),
]


def _on_axis(record: dict[str, Any], axis: Axis) -> Any:
    """The axis value of ``record`` (its default when the record does not set it), or
    ``None`` when the record is not a run of this panel: another setting of the protocol
    differs, another ablation setting is set, or its victims were trained on subgraphs."""
    if (
        record.get("task") != "graph"
        or record.get("dataset") != DATASET
        or record.get("model") != MODEL
        or record.get("attack") != axis.attack
        or record.get("defense") not in axis.variants
    ):
        return None
    for key, value in PROTOCOL.items():
        if key not in (axis.key, "attack.target_class") and not same(resolved(record, key), value):
            return None
    if set(_ablated(record)) - {axis.key}:
        return None
    if _augmented(record):
        return None
    return resolved(record, axis.key, default=axis.default)


def _sort_key(value: Any) -> tuple[int, float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _panel(
    template: PageTemplate, records: list[dict[str, Any]], axis: Axis
) -> tuple[str, list[dict]]:
    """Markdown of one panel (empty when it has no ablation records) and the records it
    used."""
    groups: dict[tuple[str, Any], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        value = _on_axis(r, axis)
        if value is not None:
            label = _target(r) + ("" if is_protocol_victim(r) else f" {PRE_PROTOCOL}")
            groups[(label, value)][r["defense"]].append(r)
    # a target whose only point is the protocol's is no ablation
    targets = {t for t, _ in groups if len({v for u, v in groups if u == t}) > 1}
    groups = {k: v for k, v in groups.items() if k[0] in targets}
    if not groups:
        return "", []
    used = [r for by_defense in groups.values() for runs in by_defense.values() for r in runs]
    header = ["target", axis.key, "ASR backdoored", "ACC backdoored"]
    for defense in axis.variants:
        header += [f"{VARIANTS[defense]} ASR", f"{VARIANTS[defense]} ACC"]
    body = []
    for target, value in sorted(groups, key=lambda k: (k[0], _sort_key(k[1]))):
        by_defense = groups[(target, value)]
        seeds = _per_seed(by_defense)
        label = shown(value) + (" (protocol)" if same(value, axis.default) else "")
        row = [target, label, _text(_stat(seeds, "asr")), _text(_stat(seeds, "backdoored_acc"))]
        for defense in axis.variants:
            runs = by_defense.get(defense, [])
            row += [_text(_stat(runs, "defended_asr")), _text(_stat(runs, "defended_acc"))]
        body.append(row)
    text = template.fragment("panel", title=axis.title, table=markdown_table(header, body))
    ends = _ends(template, groups, axis)
    return text + ("\n\n" + "\n".join(ends) if ends else ""), used


def _ends(
    template: PageTemplate, groups: dict[tuple[str, Any], dict[str, list]], axis: Axis
) -> list[str]:
    """One sentence per target: each variant's shielded ASR and ACC at the first and the
    last value of a numeric axis (mean over seeds, points)."""
    if any(_sort_key(v)[0] for _, v in groups):
        return []  # a categorical axis has no direction
    lines = []
    for target in sorted({t for t, _ in groups}):
        values = sorted((v for t, v in groups if t == target), key=_sort_key)
        first, last = values[0], values[-1]
        changes = []
        for defense in axis.variants:
            runs_first = groups[(target, first)].get(defense, [])
            runs_last = groups[(target, last)].get(defense, [])
            if not (runs_first and runs_last):
                continue
            asr = [_stat(runs, "defended_asr")[0] for runs in (runs_first, runs_last)]
            acc = [_stat(runs, "defended_acc")[0] for runs in (runs_first, runs_last)]
            changes.append(
                template.fragment(
                    "change",
                    variant=VARIANTS[defense],
                    asr_first=f"{asr[0]:.1f}",
                    asr_last=f"{asr[1]:.1f}",
                    acc_first=f"{acc[0]:.1f}",
                    acc_last=f"{acc[1]:.1f}",
                )
            )
        if changes:
            lines.append(
                template.fragment(
                    "ends",
                    target=target,
                    key=axis.key,
                    first=shown(first),
                    last=shown(last),
                    changes="; ".join(changes),
                )
            )
    return lines


@page("graphprot-ablations", inputs=["results/graphprot"])
def render(records: list[dict[str, Any]], template: PageTemplate | None = None) -> str:
    """GraphProt's Fig. 3 ablations (N, trigger size and pattern, p, r) on AIDS with GCN."""
    template = template or PageTemplate.load("graphprot-ablations")
    panels: list[str] = []
    used: list[dict] = []
    for axis in AXES:
        text, runs = _panel(template, records, axis)
        if text:
            panels.append(text)
        used += runs
    return template.render(
        panels="\n\n".join(panels) if panels else template.fragment("empty"),
        **provenance(unique(used)),
    )
