"""Figures of ``gnnbackdoor report DIR --figures`` (PNG, from records only), written into
``DIR/figures/``:

* ``defenses_<dataset>.png``: ASR and accuracy before and after each defense, with the
  shield's floor (its no-trigger rate) marked;
* ``attacks_<dataset>.png``: per attack, ASR beside the clean-model ASR (and for links the
  no-trigger rate), clean and backdoored accuracy or AUC;
* ``triggered_graph_<dataset>_<attack>.png``: one triggered graph kept in a record
  (``attack_info["example_graph"]``) drawn with networkx, trigger nodes marked;
* ``blackbox_<dataset>.png``: Link-Backdoor's surrogate × target ASR heat-map, where black-box
  records exist (:mod:`gnnbackdoor.experiments.blackbox_matrix`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from gnnbackdoor.experiments.summary import Row, build_rows, held_out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _bars(ax, labels: list[str], series: list[tuple[str, list[float]]], title: str) -> None:
    import numpy as np

    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series):
        heights = [0.0 if math.isnan(v) else 100 * v for v in values]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name)
        for bar, value in zip(bars, values, strict=True):
            text = "n/a" if math.isnan(value) else f"{100 * value:.0f}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 140)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper center", ncol=min(len(series), 2), frameon=False)


#: At most this many groups per figure.
MAX_GROUPS = 12


def main_rows(rows: list[Row], by: str = "defense") -> tuple[list[Row], int]:
    """The groups a figure shows: for each value of ``by`` (each defense, or each attack),
    the rows of its own main configuration, the settings its records use most (then the
    fewest settings changed), so that one component run with another setting (GCleaner with
    ``defense.holding_rate``) is not dropped for a global choice; ablations and sweeps over
    a setting stay in the tables. At most :data:`MAX_GROUPS`; returns also how many groups
    are left out."""
    if not rows:
        return [], 0
    weight: dict[tuple[Any, str], int] = {}
    for row in rows:
        key = (getattr(row, by), row.settings)
        weight[key] = weight.get(key, 0) + row.seeds
    chosen: dict[Any, str] = {}
    for (component, settings), count in weight.items():
        held = chosen.get(component)
        size = len([p for p in settings.split(",") if p])
        if held is None:
            chosen[component] = settings
            continue
        held_rank = (-weight[(component, held)], len([p for p in held.split(",") if p]), held)
        if (-count, size, settings) < held_rank:
            chosen[component] = settings
    shown = [r for r in rows if chosen[getattr(r, by)] == r.settings][:MAX_GROUPS]
    return shown, len(rows) - len(shown)


def _left_out(count: int) -> str:
    return f" ({count} other configuration(s) in the report's tables)" if count else ""


def defense_figure(rows: list[Row], dataset: str, path: Path) -> Path | None:
    """ASR and accuracy before/after each defense on ``dataset`` (``None``: no defense rows)."""
    mine, left_out = main_rows([r for r in rows if r.kind == "defense" and r.dataset == dataset])
    if not mine:
        return None
    plt = _pyplot()
    held = [held_out(r) for r in mine]
    labels = [
        f"{r.defense}{'*' if h else ''}\n{r.model} / {r.attack or 'none'}"
        for r, h in zip(mine, held, strict=True)
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 4 + 2.2 * len(mine)), 4))
    _bars(
        left,
        labels,
        [
            ("ASR before", [r.mean("asr") for r in mine]),
            ("ASR after", [r.mean("defended_asr") for r in mine]),
            ("floor (no trigger)", [r.mean("defended_target_no_trigger") for r in mine]),
        ],
        "attack success rate",
    )
    _bars(
        right,
        labels,
        [
            (
                "acc before",
                [r.mean("backdoored_acc" if r.attack else "clean_acc") for r in mine],
            ),
            ("acc after", [r.mean("defended_acc") for r in mine]),
        ],
        "accuracy on clean graphs",
    )
    for i, r in enumerate(mine):
        classes = r.mean("num_classes")
        if not math.isnan(classes) and classes >= 2:
            right.hlines(100 / classes, i - 0.45, i + 0.45, colors="grey", linestyles="dashed")
    fig.suptitle(f"Defenses on {dataset} (dashed: chance){_left_out(left_out)}", fontsize=11)
    notes = held_out_footnotes(mine)
    if not notes:
        return _save(fig, path)
    fig.text(0.01, 0.01, "\n".join(notes), fontsize=8, va="bottom")
    return _save(fig, path, bottom=0.05 * len(notes) + 0.02)


def held_out_footnotes(rows: list[Row]) -> list[str]:
    """The defense figure's footnotes: one per defense whose rows are scored on the
    evaluation graphs its defender did not hold out (GCleaner), as the report's tables say."""
    notes = set()
    for row in rows:
        counts = held_out(row)
        if counts is not None:
            notes.add(
                f"* {row.defense}: before and after scored on the {counts[0]:.0f} evaluation "
                f"graphs it did not hold out ({counts[1]:.0f} held out), not the whole test set"
            )
    return sorted(notes)


def attack_figure(rows: list[Row], dataset: str, path: Path) -> Path | None:
    """Per attack on ``dataset``: ASR vs clean-model ASR (and no-trigger rate), and the clean
    vs backdoored accuracy or AUC (``None``: no attack rows)."""
    mine, left_out = main_rows(
        [r for r in rows if r.kind == "attack" and r.dataset == dataset], by="attack"
    )
    if not mine:
        return None
    plt = _pyplot()
    link = mine[0].task == "link"
    score = "auc" if link else "acc"
    labels = [f"{r.attack}\n{r.model}" for r in mine]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 4 + 2.2 * len(mine)), 4))
    series = [
        ("ASR (backdoored)", [r.mean("asr") for r in mine]),
        ("ASR (clean model)", [r.mean("clean_model_asr") for r in mine]),
    ]
    if link:
        series.append(("no-trigger rate (floor)", [r.mean("no_trigger_rate") for r in mine]))
    _bars(left, labels, series, "attack success rate")
    _bars(
        right,
        labels,
        [
            (f"clean {score.upper()}", [r.mean(f"clean_{score}") for r in mine]),
            (f"backdoored {score.upper()}", [r.mean(f"backdoored_{score}") for r in mine]),
        ],
        "clean test data",
    )
    fig.suptitle(f"Attacks on {dataset}{_left_out(left_out)}", fontsize=11)
    return _save(fig, path)


def triggered_graph_figure(record: dict[str, Any], path: Path) -> Path | None:
    """Draw the record's example triggered graph, trigger nodes in red (``None``: the record
    keeps none)."""
    example = (record.get("attack_info") or {}).get("example_graph")
    if not example:
        return None
    import networkx as nx

    plt = _pyplot()
    graph = nx.Graph()
    graph.add_nodes_from(range(int(example["num_nodes"])))
    graph.add_edges_from(tuple(e) for e in example["edges"])
    trigger = set(example["trigger_nodes"])
    layout = nx.spring_layout(graph, seed=0)  # a fixed layout seed: the same drawing each time
    colours = ["tab:red" if v in trigger else "tab:blue" for v in graph.nodes]
    trigger_edges = [(u, v) for u, v in graph.edges if u in trigger and v in trigger]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    nx.draw_networkx_edges(graph, layout, ax=ax, edge_color="lightgrey")
    nx.draw_networkx_edges(graph, layout, edgelist=trigger_edges, ax=ax, edge_color="tab:red")
    nx.draw_networkx_nodes(graph, layout, ax=ax, node_color=colours, node_size=80)
    predicted = example.get("backdoored_prediction")
    clean = example.get("clean_prediction")
    ax.set_title(
        f"{record.get('attack')} on {record.get('dataset')}: one triggered graph "
        f"(red: {len(trigger)} trigger nodes)\ntrue class {example.get('label')}, target "
        f"{example.get('target_class')}; backdoored model says {predicted}, clean model {clean}",
        fontsize=9,
    )
    ax.set_axis_off()
    return _save(fig, path)


def _save(fig, path: Path, bottom: float = 0.0) -> Path:
    """Write ``fig`` to ``path`` (PNG), leaving the lowest ``bottom`` share for footnotes."""
    plt = _pyplot()
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Every figure the records allow, into ``out_dir``; returns the paths written."""
    from gnnbackdoor.experiments import blackbox_matrix

    rows = build_rows(records)
    written: list[Path] = []
    for dataset in sorted({r.dataset for r in rows}):
        slug = _slug(dataset)
        for figure, name in (
            (attack_figure, f"attacks_{slug}.png"),
            (defense_figure, f"defenses_{slug}.png"),
        ):
            path = figure(rows, dataset, out_dir / name)
            if path is not None:
                written.append(path)
    drawn: set[tuple[str, str]] = set()
    for record in sorted(records, key=lambda r: (r.get("dataset"), r.get("seed", 0))):
        key = (str(record.get("dataset")), str(record.get("attack")))
        if key in drawn:
            continue
        name = f"triggered_graph_{_slug(key[0])}_{_slug(key[1])}.png"
        path = triggered_graph_figure(record, out_dir / name)
        if path is not None:
            drawn.add(key)
            written.append(path)
    for dataset in sorted({r["dataset"] for r in records if blackbox_matrix.surrogate_of(r)}):
        matrix = blackbox_matrix.build_matrix(records, dataset)
        if matrix.cells():
            written.append(blackbox_matrix.plot(matrix, out_dir / f"blackbox_{_slug(dataset)}.png"))
    return written
