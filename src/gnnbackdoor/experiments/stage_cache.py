"""Opt-in on-disk cache of the victim and attack stages of attacked or defended graph runs, so
that a sweep over a defense's settings (holding rate included), and the undefended run of the
same cell, train the clean and the backdoored victims once.

Set ``GNNBACKDOOR_STAGE_CACHE`` to a folder to turn it on; unset, nothing changes. An entry
(:class:`AttackStage`) holds what a :class:`~gnnbackdoor.experiments.pipelines.GraphPipeline`
has before the defender's split and the defense act: the clean and the backdoored victims'
weights, the attack's triggered test graphs with their trigger positions, the clean
training's figures, the attack's ``describe()`` and timings. Those stages draw only from
their own random streams (:mod:`gnnbackdoor.utils.seeding`), which nothing after them
touches, so an entry holds no random state: a hit gives the defense exactly what an
uncached run gives it and every metric is the same; only the stages' timings are the stored
ones (the record's ``attack_info`` says ``stage_cached: true``).

The key hashes the dataset, model, data and training settings, the attack and its
parameters, the seed, torch's thread count, the package, torch and PyG versions, and the
source of the modules that shape the stages (:func:`~gnnbackdoor.utils.sources.source_digest`
of the attack's and the dataset's classes and their base classes in this package, and of the
modules the pipeline names).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import PoisonResult
from gnnbackdoor.contracts.results import TriggeredGraphs
from gnnbackdoor.experiments.config import as_dict
from gnnbackdoor.utils.files import atomic_torch_save
from gnnbackdoor.utils.sources import own_classes, source_digest

ENV = "GNNBACKDOOR_STAGE_CACHE"


@dataclass
class AttackStage:
    """One cache entry (see the module docstring).

    Attributes:
        clean_state, backdoored_state: The victims' ``state_dict``s (``None``: no attack).
        triggered: The attack's activation of the eligible test graphs (``None``: no attack).
        eligible: Test-split positions of the graphs handed to ``activate``.
        figures: The clean training's figures for the record's metrics.
        info: The attack's ``describe()``.
        seconds: The stages' phase timings.
        ctx_timings: What the attack added to ``ctx.timings``.
        test_triggered: The attack's activation of every test graph, made after
            ``triggered`` (``source`` indexes the test split; ``None``: no attack).
        single_node: GTA's single-node copies of the eligible test graphs (``None``: other
            attacks).
        training: The graphs the backdoored victim was trained and validated on, for
            training defenses, stored as their changes to the run's split
            (:class:`StoredTraining`; ``None``: no attack, or an entry made before they were
            kept: a training defense reruns the stages).
    """

    clean_state: dict[str, torch.Tensor]
    backdoored_state: dict[str, torch.Tensor] | None
    triggered: TriggeredGraphs | None
    eligible: list[int]
    figures: dict[str, float]
    info: dict[str, Any]
    seconds: dict[str, float]
    ctx_timings: dict[str, float]
    test_triggered: TriggeredGraphs | None = None
    single_node: TriggeredGraphs | None = None
    training: StoredTraining | None = None


def _changes(graphs: Sequence[Data], split: Sequence[Data]) -> tuple[int, dict[int, Data]]:
    if len(graphs) != len(split):
        return len(graphs), dict(enumerate(graphs))
    return len(graphs), {i: g for i, g in enumerate(graphs) if g is not split[i]}


def _restored(size: int, changed: dict[int, Data], split: Sequence[Data]) -> list[Data]:
    if size != len(split):
        return [changed[i] for i in range(size)]
    return [changed.get(i, g) for i, g in enumerate(split)]


@dataclass
class StoredTraining:
    """A recorded training set (:meth:`GraphAttack.training_set
    <gnnbackdoor.attacks.base.GraphAttack.training_set>`) as its changes to the run's split:
    the graphs that are not the split's own objects (the poisoned ones), by position. An
    attack's poisoning copies only the graphs it poisons, so an entry holds a few graphs
    rather than the training split again (COLLAB: hundreds of MB); a list of another length
    is stored whole."""

    size: int
    poisoned_index: list[int]
    changed: dict[int, Data]
    val_size: int
    val_changed: dict[int, Data]

    @classmethod
    def compact(
        cls,
        training: PoisonResult,
        val: Sequence[Data],
        train_split: Sequence[Data],
        val_split: Sequence[Data],
    ) -> StoredTraining:
        size, changed = _changes(training.graphs, train_split)
        val_size, val_changed = _changes(val, val_split)
        return cls(size, list(training.poisoned_index), changed, val_size, val_changed)

    def restore(
        self, train_split: Sequence[Data], val_split: Sequence[Data]
    ) -> tuple[PoisonResult, list[Data]]:
        """The training set (graphs, poisoned positions) and validation graphs."""
        graphs = _restored(self.size, self.changed, train_split)
        return PoisonResult(graphs, list(self.poisoned_index)), _restored(
            self.val_size, self.val_changed, val_split
        )


@dataclass
class SharedCopies:
    """Copies of graphs stored as one base graph per source and the rows of ``x`` in which
    each copy differs from its base, for a :class:`~gnnbackdoor.contracts.results.
    TriggeredGraphs` whose copies of one source differ only in a few feature rows (GTA's
    single-node copies: one copy per trigger node, each with one row written). Kept whole,
    the single-node copies of COLLAB's test graphs take 4.7 GB of a GTA entry's 5.2 GB
    (845 graphs x 22 trigger nodes, each copy a full graph); compacted they take the size of
    the graphs once. Restoring gives every copy back exactly (same tensors, values, dtypes,
    positions and sources), each with tensors of its own.

    Attributes:
        positions, source: As in ``TriggeredGraphs`` (``source`` spelled out).
        bases: The first copy of each source, by source.
        rows: Per copy, ``(index, values)``: positions of the rows of ``x`` that differ from
            its base's (shape ``[k]``, int64) and those rows (shape ``[k, F]``); ``None`` for
            a copy stored whole in ``whole``.
        whole: Copies that do not have their base's attributes but for ``x``, by position.
    """

    positions: list[list[int]]
    source: list[int]
    bases: dict[int, Data]
    rows: list[tuple[torch.Tensor, torch.Tensor] | None]
    whole: dict[int, Data]

    @classmethod
    def compact(cls, copies: TriggeredGraphs) -> SharedCopies:
        """``copies`` compacted (copies that differ from their base elsewhere than in the
        values of ``x`` are kept whole)."""
        source = copies.sources()
        bases: dict[int, Data] = {}
        rows: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        whole: dict[int, Data] = {}
        for i, (graph, s) in enumerate(zip(copies.graphs, source, strict=True)):
            base = bases.setdefault(s, graph)
            if not _same_but_x(graph, base):
                rows.append(None)
                whole[i] = graph
                continue
            differs = (graph.x != base.x).reshape(graph.x.shape[0], -1).any(dim=1)
            index = differs.nonzero().flatten()
            rows.append((index, graph.x[index].clone()))
        return cls([list(p) for p in copies.positions], source, bases, rows, whole)

    def restore(self) -> TriggeredGraphs:
        """The ``TriggeredGraphs`` this was made from."""
        graphs: list[Data] = []
        for i, (s, changed) in enumerate(zip(self.source, self.rows, strict=True)):
            if changed is None:
                graphs.append(self.whole[i])
                continue
            graph = self.bases[s].clone()
            index, values = changed
            graph.x[index] = values
            graphs.append(graph)
        return TriggeredGraphs(graphs, [list(p) for p in self.positions], list(self.source))


def _same_but_x(graph: Data, base: Data) -> bool:
    """Whether ``graph`` has ``base``'s attributes, equal but for the values of ``x``."""
    if graph is base:
        return True
    if set(graph.keys()) != set(base.keys()) or "x" not in graph:
        return False
    for key, a in graph:
        b = base[key]
        if torch.is_tensor(a) != torch.is_tensor(b):
            return False
        if not torch.is_tensor(a):
            if a != b:
                return False
            continue
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if key != "x" and not torch.equal(a, b):
            return False
    return True


def cache_path(run: Any, sources: list[Any]) -> Path | None:
    """The cache file of ``run``'s victim and attack stages, or ``None`` when the cache is off.

    Args:
        run: The :class:`~gnnbackdoor.experiments.pipelines.ResolvedRun`.
        sources: Modules (or classes) whose source shapes the stages besides the attack's
            classes; the pipeline passes its own module among them.
    """
    root = os.environ.get(ENV)
    if not root:
        return None
    import torch_geometric

    from gnnbackdoor import __version__

    attack = run.attack
    parts = {
        "dataset": run.dataset_name,
        "model": [type(run.model_spec).__name__, as_dict(run.model_spec)],
        "data": as_dict(run.data_config),
        "train": as_dict(run.train_config),
        "attack": [type(attack).__name__, attack.params()] if attack is not None else None,
        "seed": run.seed,
        "threads": torch.get_num_threads(),
        "versions": [__version__, torch.__version__, torch_geometric.__version__],
        "source": source_digest(
            [*own_classes(type(attack)), *own_classes(type(run.dataset)), *sources]
        ),
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return Path(root) / f"stage-{hashlib.sha256(text.encode()).hexdigest()[:24]}.pt"


def save(path: Path, stage: AttackStage) -> None:
    """Store ``stage`` atomically (:func:`~gnnbackdoor.utils.files.atomic_write`): parallel
    workers that fill one key never expose a partial file to a reader."""
    if isinstance(stage.single_node, TriggeredGraphs):
        stage = replace(stage, single_node=SharedCopies.compact(stage.single_node))
    atomic_torch_save({"stage": stage}, path)


def load(path: Path) -> AttackStage | None:
    """The stored stage, or ``None`` on a miss (no file, or an entry of an older layout)."""
    if not path.is_file():
        return None
    try:
        stage = torch.load(path, weights_only=False)["stage"]
    except Exception:  # a stale or partial entry: run the stages instead
        return None
    if not isinstance(stage, AttackStage):
        return None
    if isinstance(stage.single_node, SharedCopies):
        stage.single_node = stage.single_node.restore()
    return stage
