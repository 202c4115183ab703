"""Prune: drop what is unlike its neighbours, then predict -- GCleaner's ``Prune`` baseline
(Table III).

Source. GCleaner Sec. 5.2: "Prune identifies nodes with significantly low cosine similarity
to the features of their connected nodes for pruning"; it explores it as one of "two
possible defense methods from existing articles about graph backdoor attacks". The edge form
(drop edges whose endpoints' features have low cosine similarity) is the ``Prune`` defense
of Dai et al., "Unnoticeable Backdoor Attacks on Graph Neural Networks" (WWW 2023), carried
here from node to graph classification.

Per input graph, at test time, with only a prediction function:

* ``unit="node"`` (default, GCleaner's wording): a node's score is the mean cosine similarity
  of its feature vector to those of its neighbours (``torch.nn.functional.cosine_similarity``;
  a zero vector has similarity 0 to everything); nodes scoring below ``threshold`` are
  removed with their edges, the rest keep their order;
* ``unit="edge"``: undirected edges whose endpoints' similarity is below ``threshold`` are
  removed; every node stays.

The pruned graphs go to the black box in one query.

Decisions the paper leaves open:

* "Significantly low" is an absolute threshold on the cosine similarity (default 0.1, so on
  one-hot node labels -- AIDS, Motifs -- a node goes when none of its neighbours shares
  its label); isolated nodes have no neighbours to compare with and stay.
* A graph left with no nodes (or given without nodes) cannot be classified: it gets
  :data:`~gnnbackdoor.defenses.shielding.REJECTED` (see that module for how the figures
  count it).
* There is nothing random: ``seed`` is accepted for the shields' common signature and
  unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

from gnnbackdoor.defenses.base import DEFENSES, InputShield, PredictFn, ShieldResult
from gnnbackdoor.defenses.shielding import REJECTED, Unit, num_nodes

UNITS = tuple(Unit)


def edge_similarity(x: Tensor, edge_index: Tensor) -> Tensor:
    """Cosine similarity ``[E]`` of the features of each edge's endpoints (0 where one is
    the zero vector)."""
    x = x.float()
    return F.cosine_similarity(x[edge_index[0]], x[edge_index[1]], dim=-1, eps=1e-12)


def node_similarity(x: Tensor, edge_index: Tensor) -> Tensor:
    """Mean cosine similarity ``[N]`` of each node to its neighbours (self-loops ignored;
    ``nan`` for a node without neighbours). Edges are read as given: an undirected graph
    lists each edge both ways."""
    n = x.size(0)
    keep = edge_index[0] != edge_index[1]
    edges = edge_index[:, keep]
    sim = edge_similarity(x, edges)
    total = torch.zeros(n).index_add_(0, edges[0], sim)
    count = torch.zeros(n).index_add_(0, edges[0], torch.ones_like(sim))
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, np.nan))


@DEFENSES.register("prune")
@dataclass
class Prune(InputShield):
    """Remove nodes (or edges) with low cosine feature similarity to their neighbours, then
    predict.

    Attributes:
        threshold: Nodes (edges) with similarity strictly below it go, in [-1, 1].
        unit: ``node`` or ``edge``.
    """

    reference: ClassVar[str] = (
        "GCleaner (Sec. 5.2) Prune baseline; Dai et al., Unnoticeable Backdoor Attacks on "
        "Graph Neural Networks (2023)"
    )

    threshold: Annotated[float, Field(ge=-1, le=1)] = 0.1
    unit: Unit = Unit.NODE

    def __post_init__(self) -> None:
        super().__post_init__()
        self._nodes = 0
        self._removed_nodes = 0
        self._edges = 0
        self._removed_edges = 0
        self._graphs = 0
        self._rejected = 0

    def predict(
        self,
        predict_fn: PredictFn,
        graphs: Sequence[Data],
        *,
        seed: int | np.random.Generator | None = None,
    ) -> ShieldResult:
        """Labels of the pruned ``graphs`` with one call to ``predict_fn`` (none when every
        graph is rejected).

        Args:
            predict_fn: The black box: a list of graphs in, one label each out.
            graphs: Graphs to classify (not modified).
            seed: Unused (nothing is random); accepted for the shields' common signature.

        Returns:
            Labels ``[B]`` (:data:`REJECTED` for a graph left without nodes) and per graph
            ``removed_nodes`` (indices), ``kept_nodes`` (count), ``removed_edges``
            (undirected, counted once) and ``rejected``.

        Raises:
            ValueError: ``predict_fn`` returns a number of labels other than the number of
                graphs sent.
        """
        pruned: list[Data | None] = []
        details: list[dict[str, Any]] = []
        for graph in graphs:
            sub, detail = self.prune(graph)
            pruned.append(sub)
            details.append(detail)
        batch = [g for g in pruned if g is not None]
        answers: list[int] = []
        if batch:
            answers = [int(v) for v in torch.as_tensor(predict_fn(batch)).view(-1).tolist()]
            if len(answers) != len(batch):
                raise ValueError(f"predict_fn returned {len(answers)} labels for {len(batch)}")
        it = iter(answers)
        labels = [REJECTED if g is None else next(it) for g in pruned]
        return ShieldResult(
            torch.tensor(labels, dtype=torch.long),
            details,
            queries=1 if batch else 0,
            graphs_queried=len(batch),
        )

    def prune(self, graph: Data) -> tuple[Data | None, dict[str, Any]]:
        """The pruned copy of ``graph`` (``None`` if no node is left) and what went."""
        n = num_nodes(graph)
        self._graphs += 1
        self._nodes += n
        if n == 0:
            self._rejected += 1
            return None, {
                "removed_nodes": [],
                "kept_nodes": 0,
                "removed_edges": 0,
                "rejected": True,
            }
        x = graph.x.detach()
        edge_index = graph.edge_index.detach()
        undirected_edges = int((edge_index[0] < edge_index[1]).sum())
        self._edges += undirected_edges
        if self.unit == "node":
            score = node_similarity(x, edge_index)
            drop = score < self.threshold  # nan (no neighbours) compares False: kept
            keep = ~drop
            removed = torch.nonzero(drop).view(-1).tolist()
            if not bool(keep.any()):
                self._removed_nodes += n
                self._rejected += 1
                return None, {
                    "removed_nodes": removed,
                    "kept_nodes": 0,
                    "removed_edges": undirected_edges,
                    "rejected": True,
                }
            sub_edges, _ = subgraph(keep, edge_index, relabel_nodes=True, num_nodes=n)
            sub = Data(x=x[keep].clone(), edge_index=sub_edges)
            gone = undirected_edges - int((sub_edges[0] < sub_edges[1]).sum())
            self._removed_nodes += len(removed)
        else:
            sim = edge_similarity(x, edge_index)
            kept_edges = (sim >= self.threshold) | (edge_index[0] == edge_index[1])
            sub = Data(x=x.clone(), edge_index=edge_index[:, kept_edges].clone())
            removed = []
            gone = int(((~kept_edges) & (edge_index[0] < edge_index[1])).sum())
        self._removed_edges += gone
        return sub, {
            "removed_nodes": removed,
            "kept_nodes": n - len(removed),
            "removed_edges": gone,
            "rejected": False,
        }

    def describe(self) -> dict[str, Any]:
        """Over every graph this shield has answered: shares of nodes and undirected edges
        removed, and of graphs rejected."""
        if not self._graphs:
            return {}
        return {
            "prune_removed_node_fraction": self._removed_nodes / max(1, self._nodes),
            "prune_removed_edge_fraction": self._removed_edges / max(1, self._edges),
            "prune_rejected_fraction": self._rejected / self._graphs,
        }
