"""What components return. Attacks and defenses hand their products back as values; the
pipeline measures them with the functions of :mod:`gnnbackdoor.metrics` (a component never
evaluates itself and keeps no result on ``self`` for the pipeline to fetch)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data


@dataclass
class TriggeredGraphs:
    """What :meth:`GraphAttack.activate <gnnbackdoor.attacks.base.GraphAttack.activate>`
    returns: triggered copies of (some of) its input graphs.

    Attributes:
        graphs: The triggered copies, labels unchanged.
        positions: ``positions[i]``: the nodes of ``graphs[i]`` that carry the trigger.
        source: ``source[i]``: the position in the input list of the graph ``graphs[i]``
            was made from, increasing. ``None`` means one triggered graph per input, in
            order. An attack may leave inputs out (a graph smaller than the trigger).

    Raises:
        ValueError: ``positions`` or ``source`` does not have one entry per graph.
    """

    graphs: list[Data]
    positions: list[list[int]]
    source: list[int] | None = None

    def __post_init__(self) -> None:
        if len(self.positions) != len(self.graphs):
            raise ValueError(f"{len(self.positions)} trigger placements for {len(self.graphs)}")
        if self.source is not None and len(self.source) != len(self.graphs):
            raise ValueError(f"{len(self.source)} sources for {len(self.graphs)} graphs")

    def __len__(self) -> int:
        return len(self.graphs)

    def sources(self) -> list[int]:
        """``source``, with ``None`` spelled out as ``0..len-1``."""
        return list(range(len(self.graphs))) if self.source is None else list(self.source)


class ScoredModel(StrEnum):
    """Which model the pipeline scores a :class:`Probe` on."""

    INPUT = "input"  # the model handed to the repair (the backdoored one under an attack)
    CLEAN = "clean"  # the run's clean victim (the defense never sees it)
    REPAIRED = "repaired"  # the model the repair returned


@dataclass
class Probe:
    """A graph set a defense asks the pipeline to score: the share of ``graphs`` that
    ``model`` classifies as ``target`` (an ASR, :func:`gnnbackdoor.metrics.attack_success_rate`;
    ``nan`` for an empty set).

    Attributes:
        graphs: The graphs to classify (e.g. GCleaner's defender graphs carrying the
            recovered trigger, those whose label is not ``target``).
        target: The class counted as a hit.
        model: Which model to score them on.
    """

    graphs: list[Data]
    target: int
    model: ScoredModel = ScoredModel.REPAIRED


@dataclass
class RepairResult:
    """What :meth:`ModelRepairDefense.repair
    <gnnbackdoor.defenses.base.ModelRepairDefense.repair>` returns.

    Attributes:
        model: The repaired model.
        info: Figures about what the repair did (losses, similarities, counts), added to the
            record's metrics as they are.
        probes: Graph sets to score, by the metric name the score is recorded under.
        recovered: The defense's own trigger on the defender's graphs (GCleaner's recovered
            trigger), for measurements only the pipeline can make (Table IV's cosine against
            the attack's trigger); ``source[i]``: the position in the ``clean_graphs``
            handed to the repair of the graph ``recovered.graphs[i]`` was made from.
            ``None``: no such graphs (or not made from ``clean_graphs``).
        notes: One-line texts for the record's info (e.g. GCleaner's teacher check).
    """

    model: torch.nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)
    recovered: TriggeredGraphs | None = None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class ShieldResult:
    """What a shield returns for a batch of graphs.

    Attributes:
        labels: Final labels ``[B]``.
        details: One dict per graph (votes, removed nodes, ...), JSON-serialisable.
        queries: Number of calls made to the prediction function.
        graphs_queried: Number of (sub)graphs sent to it in total.
    """

    labels: Tensor
    details: list[dict[str, Any]] = field(default_factory=list)
    queries: int = 0
    graphs_queried: int = 0


@dataclass
class TrainingDefenseResult:
    """What :meth:`TrainingDefense.train <gnnbackdoor.defenses.base.TrainingDefense.train>`
    returns: the model the defense trained in place of the victim's training.

    Attributes:
        model: The defended model.
        info: Figures about what the defense did, added to the record's metrics as they are.
        kept: Positions in the training list of the graphs the final model was trained on
            (a detector's filter: ED, XGBD); ``None``: every training graph was used.
        flagged: Positions of the training graphs the defense marked as poisoned (ABL's
            isolated graphs); ``None``: those ``kept`` leaves out (none when ``kept`` is
            ``None`` too). The pipeline scores them against the attack's poisoned graphs
            (:func:`~gnnbackdoor.metrics.detection.detection_scores`).
        notes: One-line texts for the record's info.

    Raises:
        ValueError: ``kept`` or ``flagged`` is not increasing.
    """

    model: torch.nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    kept: list[int] | None = None
    flagged: list[int] | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("kept", "flagged"):
            values = getattr(self, name)
            if values is not None and any(b <= a for a, b in itertools.pairwise(values)):
                raise ValueError(f"{name} must be increasing positions")

    def flagged_positions(self, num_train: int) -> list[int] | None:
        """The flagged training positions: ``flagged``, else the complement of ``kept`` in
        ``range(num_train)``; ``None`` when the defense flags nothing by design."""
        if self.flagged is not None:
            return list(self.flagged)
        if self.kept is None:
            return None
        kept = set(self.kept)
        return [i for i in range(num_train) if i not in kept]
