"""Diagnostics of a shield computed from its labels and per-graph details: the no-trigger
rate (floor) for any shield, and the subgraph diagnostics of a subgraph-voting one (GraphProt).

They explain a shield's ASR and accuracy without extra model queries: how often the model
already gets a single subgraph right (the vote can only amplify that), how much of the trigger
the filter removes compared with the rest of the graph, and how much of the trigger the
sampled subgraphs still carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gnnbackdoor.contracts.results import ShieldResult


def subgraph_vote_rate(details: Sequence[dict[str, Any]], wanted: Sequence[int]) -> float:
    """Share of all subgraph votes equal to the graph's ``wanted`` label (its true label for
    accuracy, the target class for ASR); ``nan`` without votes.

    Raises:
        ValueError: ``details`` and ``wanted`` differ in length.
    """
    if len(details) != len(wanted):
        raise ValueError(f"{len(details)} details for {len(wanted)} labels")
    hits = total = 0
    for detail, label in zip(details, wanted, strict=True):
        votes = detail["subgraph_votes"]
        hits += sum(int(v) == int(label) for v in votes)
        total += len(votes)
    return hits / total if total else float("nan")


def trigger_coverage(
    details: Sequence[dict[str, Any]], positions: Sequence[Sequence[int]]
) -> dict[str, float]:
    """How the filter and the subgraphs treat the trigger nodes of triggered graphs.

    Args:
        details: The shield's details of the triggered graphs (``removed_nodes``,
            ``kept_nodes``, ``subgraph_nodes``).
        positions: The trigger's node indices in each triggered graph, in the same order.

    Returns:
        ``filter_trigger_removed``: share of trigger nodes the filter removed;
        ``filter_other_removed``: share of the other nodes it removed;
        ``subgraph_trigger_nodes``: mean trigger nodes per subgraph;
        ``subgraph_trigger_share``: mean share of a subgraph's nodes that are trigger nodes;
        ``subgraph_two_trigger``: share of subgraphs holding at least two trigger nodes;
        ``subgraph_full_trigger``: share of subgraphs holding every trigger node.

    Raises:
        ValueError: ``details`` and ``positions`` differ in length.
    """
    if len(details) != len(positions):
        raise ValueError(f"{len(details)} details for {len(positions)} trigger placements")
    trig_removed = trig_total = other_removed = other_total = 0
    counts: list[int] = []
    shares: list[float] = []
    full = 0
    for detail, where in zip(details, positions, strict=True):
        trigger = {int(v) for v in where}
        removed = {int(v) for v in detail["removed_nodes"]}
        num_nodes = int(detail["kept_nodes"]) + len(removed)
        trig_removed += len(trigger & removed)
        trig_total += len(trigger)
        other_removed += len(removed - trigger)
        other_total += num_nodes - len(trigger)
        for nodes in detail["subgraph_nodes"]:
            inside = len(trigger.intersection(nodes))
            counts.append(inside)
            shares.append(inside / len(nodes) if nodes else 0.0)
            full += bool(trigger) and inside == len(trigger)
    nan = float("nan")
    return {
        "filter_trigger_removed": trig_removed / trig_total if trig_total else nan,
        "filter_other_removed": other_removed / other_total if other_total else nan,
        "subgraph_trigger_nodes": sum(counts) / len(counts) if counts else nan,
        "subgraph_trigger_share": sum(shares) / len(shares) if shares else nan,
        "subgraph_two_trigger": sum(c >= 2 for c in counts) / len(counts) if counts else nan,
        "subgraph_full_trigger": full / len(counts) if counts else nan,
    }


def shield_diagnostics(
    clean: ShieldResult,
    labels: Sequence[int],
    triggered: ShieldResult | None,
    target: int | None,
    positions: Sequence[Sequence[int]] | None,
) -> dict[str, float]:
    """The diagnostics of a run: the no-trigger rate for any shield with a target, and the
    subgraph diagnostics for a shield whose details carry ``subgraph_votes`` (GraphProt).

    Returns:
        ``defended_target_no_trigger`` (any shield, with a target and a clean graph of
        another class): the share of shielded labels naming the target on the *clean*
        graphs of the other classes, a rejection (a negative label) counting as no target
        (the ASR the shield would score with no trigger at all, the floor that
        ``defended_asr`` should be read against; the guide's no-trigger rate).
        For GraphProt also ``subgraph_acc``: :func:`subgraph_vote_rate` on the clean graphs;
        with a target, ``subgraph_asr`` (the same on the triggered graphs, towards the
        target) and ``subgraph_target_no_trigger`` (the share of subgraph votes naming the
        target on the clean graphs of the other classes); with trigger positions,
        :func:`trigger_coverage` prefixed ``trigger_``.
    """
    out: dict[str, float] = {}
    others = [] if target is None else [i for i, y in enumerate(labels) if int(y) != target]
    if others:
        shielded = clean.labels.tolist()
        out["defended_target_no_trigger"] = sum(shielded[i] == target for i in others) / len(others)
    if not clean.details or "subgraph_votes" not in clean.details[0]:
        return out
    out["subgraph_acc"] = subgraph_vote_rate(clean.details, labels)
    if target is None:
        return out
    if others:
        out["subgraph_target_no_trigger"] = subgraph_vote_rate(
            [clean.details[i] for i in others], [target] * len(others)
        )
    if triggered is not None:
        out["subgraph_asr"] = subgraph_vote_rate(
            triggered.details, [target] * len(triggered.details)
        )
        if positions is not None and len(positions) == len(triggered.details):
            coverage = trigger_coverage(triggered.details, positions)
            out.update({f"trigger_{k}": v for k, v in coverage.items()})
    return out
