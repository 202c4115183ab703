"""Trigger subgraphs and the machinery shared by the graph-classification backdoor attacks.

A :class:`Trigger` is a value object: a pattern of ``size`` nodes (its edges in local ids and,
optionally, the features its nodes take). :meth:`Trigger.apply` embeds it into a *copy* of a
graph at chosen node positions by replacing every edge among those nodes with the pattern's
edges (Zhang et al. 2021, Sec. 3: "we replace the subgraph induced by the chosen nodes with
the trigger"); the other edges and nodes are untouched.

:class:`SubgraphTriggerAttack` is the base of SBA, GTA, Exp-BA and Motif-BA: it resolves the
trigger size (a node count, or a fraction of the training graphs' average size), chooses which
training graphs to poison, relabels them, skips graphs smaller than the trigger, and returns
the triggered test graphs with the positions used. Subclasses say which trigger goes into a
graph and where.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import networkx as nx
import torch
from pydantic import Field
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import coalesce

from gnnbackdoor.attacks.base import GraphAttack, PoisonResult
from gnnbackdoor.contracts.results import TriggeredGraphs
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.settings import Fraction

if TYPE_CHECKING:
    from gnnbackdoor.contracts.context import GraphContext
    from gnnbackdoor.models.base import GraphClassifier

#: At most this many per-graph position lists are kept in ``describe()``; the rest are counted.
MAX_RECORDED_POSITIONS = 50


@dataclass(frozen=True, eq=False)
class Trigger:
    """A trigger subgraph.

    Attributes:
        edges: ``[2, E]`` long, undirected edges among the trigger's nodes in local ids
            ``0..size-1`` (both directions stored).
        size: Number of trigger nodes.
        features: ``[size, F]`` features written onto the trigger nodes, or ``None`` to keep
            the victim graph's features (SBA, Exp-BA, Motif-BA keep them; GTA writes them).
        name: The pattern's name, for the record.
    """

    edges: Tensor
    size: int
    features: Tensor | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a trigger needs at least one node, got size {self.size}")
        if self.edges.numel() and (int(self.edges.min()) < 0 or int(self.edges.max()) >= self.size):
            raise ValueError("trigger edges must use local node ids 0..size-1")
        if self.features is not None and self.features.size(0) != self.size:
            raise ValueError("trigger features need one row per trigger node")

    @classmethod
    def from_networkx(cls, graph: nx.Graph, name: str = "") -> Trigger:
        """The trigger of an undirected networkx graph (nodes relabelled ``0..n-1``)."""
        graph = nx.convert_node_labels_to_integers(graph)
        pairs = [(int(u), int(v)) for u, v in graph.edges() if u != v]
        return cls(edges=_both_directions(pairs), size=graph.number_of_nodes(), name=name)

    @classmethod
    def from_dense(
        cls, adjacency: Tensor, features: Tensor | None = None, name: str = ""
    ) -> Trigger:
        """The trigger of a ``[size, size]`` 0/1 adjacency (upper triangle read)."""
        upper = torch.triu(adjacency > 0, diagonal=1).nonzero().tolist()
        return cls(_both_directions([(u, v) for u, v in upper]), adjacency.size(0), features, name)

    @property
    def num_edges(self) -> int:
        """Undirected edge count."""
        return int(self.edges.size(1)) // 2

    def to_networkx(self) -> nx.Graph:
        graph = nx.Graph()
        graph.add_nodes_from(range(self.size))
        graph.add_edges_from(self.edges.t().tolist())
        return graph

    def apply(self, graph: Data, positions: Sequence[int] | Tensor) -> Data:
        """A copy of ``graph`` with the trigger embedded at ``positions``.

        Trigger node ``i`` becomes graph node ``positions[i]``. Every edge between two chosen
        nodes is removed, the trigger's edges are added among them, and (if the trigger has
        features) their feature rows are overwritten. ``graph`` itself is never modified;
        its label is kept (the attack relabels).

        Raises:
            ValueError: if ``positions`` has the wrong length, repeats a node or is out of range.
        """
        pos = torch.as_tensor(positions, dtype=torch.long).view(-1)
        num_nodes = int(graph.num_nodes)
        if pos.numel() != self.size:
            raise ValueError(f"trigger of {self.size} nodes given {pos.numel()} positions")
        if pos.unique().numel() != pos.numel():
            raise ValueError("trigger positions must be distinct nodes")
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= num_nodes):
            raise ValueError(f"trigger positions out of range for a graph of {num_nodes} nodes")
        chosen = torch.zeros(num_nodes, dtype=torch.bool)
        chosen[pos] = True
        edge_index = graph.edge_index
        keep = ~(chosen[edge_index[0]] & chosen[edge_index[1]])
        new_edges = pos[self.edges] if self.edges.numel() else edge_index.new_empty(2, 0)
        out = graph.clone()
        merged = torch.cat([edge_index[:, keep], new_edges], dim=1)
        edge_attr = getattr(graph, "edge_attr", None)
        if edge_attr is not None:
            filler = edge_attr.new_zeros((new_edges.size(1), *edge_attr.shape[1:]))
            merged, out.edge_attr = coalesce(
                merged, torch.cat([edge_attr[keep], filler]), num_nodes, reduce="max"
            )
        else:
            merged = coalesce(merged, num_nodes=num_nodes)
        out.edge_index = merged
        if self.features is not None:
            x = graph.x.clone()
            x[pos] = self.features.to(x.dtype)
            out.x = x
        return out

    def describe(self) -> dict[str, Any]:
        return {"pattern": self.name, "size": self.size, "edges": self.to_networkx_edges()}

    def to_networkx_edges(self) -> list[list[int]]:
        return [[u, v] for u, v in self.edges.t().tolist() if u < v]


def _both_directions(pairs: list[tuple[int, int]]) -> Tensor:
    if not pairs:
        return torch.empty(2, 0, dtype=torch.long)
    src = [u for u, v in pairs] + [v for u, v in pairs]
    dst = [v for u, v in pairs] + [u for u, v in pairs]
    return coalesce(torch.tensor([src, dst], dtype=torch.long))


# --- positions ----------------------------------------------------------------------------


def random_positions(num_nodes: int, size: int, generator: torch.Generator) -> Tensor:
    """``size`` distinct nodes of a ``num_nodes``-node graph drawn uniformly from ``generator``."""
    return torch.randperm(num_nodes, generator=generator)[:size]


def ranked_positions(
    scores: Tensor,
    size: int,
    most: bool = True,
    tie_break: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The ``size`` nodes with the highest (``most``) or lowest scores; ties by
    ``tie_break`` (same direction), then in a random order drawn from ``generator`` (by node
    id without one: a systematic choice, the first atoms of every molecule, when a model
    gives every node the same score)."""
    n = scores.numel()
    order = torch.arange(n) if generator is None else torch.randperm(n, generator=generator)
    if tie_break is not None:
        secondary = tie_break.detach().view(-1).float()[order]
        order = order[torch.sort(secondary, descending=most, stable=True).indices]
    primary = scores.detach().view(-1).float()[order]
    return order[torch.sort(primary, descending=most, stable=True).indices][:size]


def uninformative(scores: Tensor) -> bool:
    """Whether every node has the same score (a ranking by it is no ranking)."""
    flat = scores.detach().view(-1)
    return flat.numel() > 1 and bool((flat == flat[0]).all())


def average_nodes(graphs: Sequence[Data]) -> float:
    return sum(int(g.num_nodes) for g in graphs) / max(len(graphs), 1)


def label_of(graph: Data) -> int:
    return int(graph.y.view(-1)[0])


# --- the shared attack base ----------------------------------------------------------------


@dataclass
class SubgraphTriggerAttack(GraphAttack):
    """Base of the subgraph-trigger attacks on graph classification.

    Poisoning picks ``round(injection_ratio * len(train))`` training graphs (a ratio that
    rounds to 0 is refused)
    among those with at least ``trigger size`` nodes, non-target-class graphs first (a
    target-class graph is taken only when there are not enough others), embeds the trigger
    and relabels them ``target_class``. Graphs smaller than the trigger are never poisoned and
    are left out of :meth:`activate`'s output (so ASR is measured on graphs that can carry
    the trigger; its ``source`` says which inputs were triggered). ``fit`` fails if no
    training graph is large enough. Every draw (which graphs, where) comes from the
    generator handed to ``fit`` (``ctx.generator``).

    Attributes:
        trigger_size: Trigger nodes (GraphProt: 5). Ignored when ``trigger_fraction`` is set.
        trigger_fraction: Trigger nodes as a fraction of the training graphs' average node
            count, rounded, at least 2 (GCleaner's convention); ``None`` uses ``trigger_size``.
        poison_validation: Poison the victim's validation graphs too, at the same injection
            ratio, before training the backdoored victim. Off (the default), the backdoored
            victim early-stops on clean validation graphs, i.e. the victim owns clean held-out
            data, which keeps the epoch before the backdoor sets in whenever learning the
            trigger costs clean accuracy. On, the poisoning reaches the whole labelled pool the
            victim trains from (validation included), the plain data-poisoning threat model.
    """

    trigger_size: Annotated[int, Field(ge=2)] = 5
    trigger_fraction: Fraction | None = None
    poison_validation: bool = False

    # -- subclass hooks --

    @abstractmethod
    def _fit_trigger(self, ctx: GraphContext) -> None:
        """Draw or learn the trigger (``self.size_`` is already resolved)."""

    @abstractmethod
    def _embed(self, graph: Data) -> tuple[Data, Tensor]:
        """A triggered copy of ``graph`` (``num_nodes >= size_``) and the positions used."""

    # -- the contract --

    def fit(self, ctx: GraphContext) -> SubgraphTriggerAttack:
        """Resolve the trigger size on the training graphs, check it fits, fit the trigger."""
        train = ctx.split.train
        if not 0 <= self.target_class < ctx.num_classes:
            raise ConfigError(
                f"target_class {self.target_class} is not a class of the dataset "
                f"(0..{ctx.num_classes - 1})"
            )
        self.average_nodes_ = average_nodes(train)
        if self.trigger_fraction is not None:
            self.size_ = max(2, round(self.trigger_fraction * self.average_nodes_))
        else:
            self.size_ = self.trigger_size
        largest = max(int(g.num_nodes) for g in train)
        if self.size_ > largest:
            raise ConfigError(
                f"trigger of {self.size_} nodes is larger than every training graph "
                f"(largest has {largest} nodes); lower attack.trigger_size"
            )
        self.generator_ = ctx.generator
        self.poison_positions_: dict[int, list[int]] = {}
        self._fit_trigger(ctx)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "size_"):
            raise RuntimeError(f"{type(self).__name__} must be fitted before use")

    def choose_poison_index(self, graphs: Sequence[Data]) -> list[int]:
        """Which of ``graphs`` to poison (see the class docstring), in increasing order."""
        self._check_fitted()
        wanted = round(self.injection_ratio * len(graphs))
        if wanted == 0:
            raise ConfigError(
                f"attack.injection_ratio={self.injection_ratio} poisons 0 of the "
                f"{len(graphs)} training graphs; use at least {0.5 / len(graphs):.2g}"
            )
        fits = [i for i, g in enumerate(graphs) if int(g.num_nodes) >= self.size_]
        others = [i for i in fits if label_of(graphs[i]) != self.target_class]
        targets = [i for i in fits if label_of(graphs[i]) == self.target_class]
        order = [others[j] for j in torch.randperm(len(others), generator=self.generator_)]
        order += [targets[j] for j in torch.randperm(len(targets), generator=self.generator_)]
        return sorted(order[:wanted])

    def poison(self, graphs: Sequence[Data]) -> PoisonResult:
        """Copies of ``graphs`` where the chosen ones carry the trigger and the target label."""
        index = self.choose_poison_index(graphs)
        out = list(graphs)
        for i in index:
            triggered, positions = self._embed(graphs[i])
            triggered.y = torch.tensor([self.target_class], dtype=torch.long)
            out[i] = triggered
            self.poison_positions_[i] = positions.tolist()
        self.poisoned_index_ = index
        self.num_train_graphs_ = len(graphs)
        return PoisonResult(out, index)

    def backdoor(self, ctx: GraphContext) -> GraphClassifier:
        """Poison the training graphs (and, with ``poison_validation``, the validation
        graphs) and train a fresh victim on them; the poisoning time goes to
        ``ctx.timings["poison_s"]``."""
        start = time.perf_counter()
        poisoned = self.poison(ctx.split.train)
        val = self.validation_graphs(ctx)
        ctx.timings["poison_s"] = time.perf_counter() - start
        self._record_training_set(poisoned.graphs, val)
        return ctx.train_new_model(poisoned.graphs, desc="backdoored", val=val)

    def validation_graphs(self, ctx: GraphContext) -> list[Data]:
        """The backdoored victim's validation graphs: ``ctx.split.val`` as is, or with
        ``poison_validation`` a copy where ``injection_ratio`` of them (chosen as for the
        training graphs) carry the trigger and the target label. Call after the training
        graphs are poisoned, so that switching it on leaves their poisoning unchanged."""
        val = list(ctx.split.val)
        self.num_val_poisoned_ = 0
        if not self.poison_validation or not val:
            return val
        for i in self.choose_poison_index(val):
            triggered, _ = self._embed(val[i])
            triggered.y = torch.tensor([self.target_class], dtype=torch.long)
            val[i] = triggered
            self.num_val_poisoned_ += 1
        return val

    def activate(self, graphs: Sequence[Data]) -> TriggeredGraphs:
        """Triggered copies of the graphs that have at least ``size_`` nodes (labels kept),
        with the trigger's positions and which inputs they came from."""
        self._check_fitted()
        out, positions, source = [], [], []
        for i, graph in enumerate(graphs):
            if int(graph.num_nodes) < self.size_:
                continue
            triggered, where = self._embed(graph)
            out.append(triggered)
            positions.append(where.tolist())
            source.append(i)
        return TriggeredGraphs(out, positions, source)

    def trigger_info(self) -> dict[str, Any]:
        """Subclass extras for :meth:`describe` (the pattern, the motif counts, ...)."""
        return {}

    def describe(self) -> dict[str, Any]:
        if not hasattr(self, "size_"):
            return {}
        poisoned = getattr(self, "poisoned_index_", [])
        info: dict[str, Any] = {
            "trigger_size": self.size_,
            "trigger_size_rule": (
                f"round({self.trigger_fraction} x {self.average_nodes_:.2f} average nodes)"
                if self.trigger_fraction is not None
                else "fixed node count"
            ),
            "injection_ratio": self.injection_ratio,
            "target_class": self.target_class,
            "num_poisoned": len(poisoned),
            "poisoned_fraction": len(poisoned) / max(getattr(self, "num_train_graphs_", 1), 1),
            "poison_validation": self.poison_validation,
            "num_val_poisoned": getattr(self, "num_val_poisoned_", 0),
        }
        info.update(self.trigger_info())
        info["poison_positions"] = summarise_positions(
            {str(k): v for k, v in self.poison_positions_.items()}
        )
        return info


def summarise_positions(positions: dict[str, list[int]]) -> dict[str, Any]:
    """All positions when few, else the first ``MAX_RECORDED_POSITIONS`` and a count."""
    shown = dict(list(positions.items())[:MAX_RECORDED_POSITIONS])
    return {"count": len(positions), "truncated": len(positions) > len(shown), "by_graph": shown}
