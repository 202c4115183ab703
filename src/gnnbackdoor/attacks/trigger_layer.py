"""The trigger layer shared by GTA (an attack) and GCleaner's trigger recovery (a defense).

Both learn an ``n``-node trigger with a generator network and train it through a frozen graph
classifier, so they need the same three pieces:

1. :class:`TriggerGenerator`: maps the ``n`` chosen nodes' features ``[B, n, F]`` (and, for
   GTA, their current sub-adjacency ``[B, n, n]``) to trigger features ``[B, n, F]`` projected
   into the clean features' domain (:class:`~gnnbackdoor.attacks.feature_domain.FeatureDomain`)
   and a binary trigger adjacency ``[B, n, n]`` (:func:`straight_through_adjacency`).
   GTA (Xi et al. 2021, Sec. 4 "trigger generation function") uses two separate MLPs, a
   topology and a feature generator, over the sub-adjacency and the features; GCleaner
   (Zhang et al. 2024, Eq. 6) one MLP body with a feature and a structure head over the
   features only. Both are this class (``reads_structure``, ``shared_body``).
2. :class:`TriggerSlots` + :func:`embed_trigger`: the differentiable "replace the subgraph
   induced by the chosen nodes with the trigger" (GTA Sec. 3; GCleaner Eq. 5, the Montage)
   on a whole batch: slot features become the trigger's, the edges among the slots become
   the trigger adjacency (as 0/1 edge weights, so gradients reach it, for layers that take
   ``edge_weight``), edges to the rest of the graph stay; node count and order unchanged.
3. :func:`triggered_graphs`: the hard (detached) copies of those graphs.

Node importance (where a trigger goes) is :mod:`~gnnbackdoor.attacks.importance`.

Hand-written because no library provides a learnable, differentiable subgraph replacement
(PyG's transforms are not differentiable in the structure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from gnnbackdoor.attacks.feature_domain import FeatureDomain


def straight_through_adjacency(logits: Tensor) -> Tensor:
    """A binary, symmetric, zero-diagonal adjacency ``[..., n, n]`` from real ``logits``,
    with the straight-through gradient of ``sigmoid((L + Lᵀ) / 2)``.

    Forward: ``1[p > 0.5]`` off the diagonal; backward: ``∂/∂p`` passes through unchanged
    (GTA Sec. 4; GCleaner Sec. 4.3, "as in binary neural networks").
    """
    sym = (logits + logits.transpose(-1, -2)) / 2
    prob = torch.sigmoid(sym)
    hard = (prob > 0.5).to(prob.dtype)
    n = logits.size(-1)
    off_diagonal = 1 - torch.eye(n, dtype=prob.dtype, device=prob.device)
    return (hard + (prob - prob.detach())) * off_diagonal  # exactly 0/1 forward


class TriggerGenerator(nn.Module):
    """Trigger features and adjacency for ``size`` chosen nodes.

    Args:
        size: ``n``, nodes of the trigger.
        num_features: ``F``, node feature width.
        hidden: Width of the hidden layer(s).
        domain: Projection of the raw feature output into the clean features' domain;
            ``None`` keeps the chosen nodes' own features (a structure-only trigger).
        reads_structure: Also read the chosen nodes' ``[n, n]`` sub-adjacency (GTA), not only
            their ``[n, F]`` features (GCleaner Eq. 6).
        shared_body: One hidden layer feeding a feature and a structure head (GCleaner);
            ``False``: two separate two-layer MLPs, topology then features (GTA). The
            modules are created in each paper's order, so a given torch seed gives the same
            initial weights as the original implementations.
    """

    def __init__(
        self,
        size: int,
        num_features: int,
        hidden: int,
        domain: FeatureDomain | None,
        reads_structure: bool = False,
        shared_body: bool = True,
    ) -> None:
        super().__init__()
        self.size, self.num_features = size, num_features
        self.domain = domain
        self.reads_structure = reads_structure
        self.shared_body = shared_body
        width = size * num_features + (size * size if reads_structure else 0)
        if shared_body:
            self.body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU())
            self.feature_head = nn.Linear(hidden, size * num_features)
            self.structure_head = nn.Linear(hidden, size * size)
        else:
            self.structure_body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU())
            self.structure_head = nn.Linear(hidden, size * size)
            self.feature_body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU())
            self.feature_head = nn.Linear(hidden, size * num_features)

    def forward(self, x: Tensor, adjacency: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x [B, n, F]`` (and ``adjacency [B, n, n]`` when ``reads_structure``) ->
        trigger features ``[B, n, F]`` and binary adjacency ``[B, n, n]`` (hard values,
        straight-through gradients).

        Raises:
            ValueError: ``adjacency`` missing although the generator reads it.
        """
        batch = x.size(0)
        if self.reads_structure:
            if adjacency is None:
                raise ValueError("this generator reads the chosen nodes' sub-adjacency")
            inputs = torch.cat([adjacency.reshape(batch, -1), x.reshape(batch, -1)], dim=1)
        else:
            inputs = x.reshape(batch, -1)
        if self.shared_body:
            hidden = self.body(inputs)
            structure_hidden = feature_hidden = hidden
        else:
            structure_hidden = self.structure_body(inputs)
            feature_hidden = self.feature_body(inputs)
        raw = self.feature_head(feature_hidden).view(batch, self.size, self.num_features)
        # without a domain: structure only (``0 * raw`` keeps the feature head in autograd)
        features = x + 0 * raw if self.domain is None else self.domain(raw)
        logits = self.structure_head(structure_hidden).view(batch, self.size, self.size)
        return features, straight_through_adjacency(logits)


def _batch_of(graphs: Sequence[Data]) -> Batch:
    return Batch.from_data_list([Data(x=g.x, edge_index=g.edge_index, y=g.y) for g in graphs])


@dataclass
class TriggerSlots:
    """Graphs batched together with the ``n`` node positions their trigger replaces.

    Attributes:
        batch: The clean graphs as one PyG ``Batch`` (``x``, ``edge_index``, ``y`` only).
        slots: ``[B, n]`` batch-level node indices; trigger node ``i`` of graph ``b`` is
            ``slots[b, i]``.
        base_edge_index: The batch's edges without those among a graph's own slots.
    """

    batch: Batch
    slots: Tensor
    base_edge_index: Tensor

    @classmethod
    def build(cls, graphs: Sequence[Data], positions: Sequence[Tensor]) -> TriggerSlots:
        """``positions[i]``: the ``n`` distinct local node indices of graph ``i`` to replace."""
        batch = _batch_of(graphs)
        slots = torch.stack([torch.as_tensor(p) + batch.ptr[i] for i, p in enumerate(positions)])
        in_slot = torch.zeros(batch.num_nodes, dtype=torch.bool)
        in_slot[slots.view(-1)] = True
        src, dst = batch.edge_index
        internal = in_slot[src] & in_slot[dst] & (batch.batch[src] == batch.batch[dst])
        return cls(batch, slots, batch.edge_index[:, ~internal])

    def slot_features(self) -> Tensor:
        """``[B, n, F]`` features of the slots, in slot order."""
        return self.batch.x[self.slots]

    def slot_adjacency(self) -> Tensor:
        """``[B, n, n]`` 0/1 adjacency among each graph's slots, in slot order (what GTA's
        topology generator reads)."""
        b, n = self.slots.shape
        local = torch.full((self.batch.num_nodes,), -1, dtype=torch.long)
        local[self.slots.view(-1)] = torch.arange(n).repeat(b)
        src, dst = self.batch.edge_index
        ls, ld = local[src], local[dst]
        inside = (ls >= 0) & (ld >= 0)  # a batch's edges never cross graphs
        adjacency = torch.zeros(b, n, n)
        adjacency[self.batch.batch[src[inside]], ls[inside], ld[inside]] = 1.0
        return adjacency

    def select(self, index: Tensor) -> TriggerSlots:
        """The sub-batch of graphs ``index``."""
        graphs = self.batch.index_select(index)
        positions = [self.slots[int(i)] - self.batch.ptr[int(i)] for i in index.view(-1)]
        return TriggerSlots.build(graphs, positions)


def embed_trigger(
    slots: TriggerSlots, features: Tensor, adjacency: Tensor, weighted: bool = True
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Replace each graph's slots with its trigger, differentiably, on the whole batch:
    slot features become ``features`` and the edges among the slots become ``adjacency``;
    edges to the rest of the graph stay (GCleaner Eq. 5; GTA's trigger embedding).

    Args:
        slots: Graphs and their trigger positions.
        features: ``[B, n, F]`` trigger features.
        adjacency: ``[B, n, n]`` binary (straight-through) trigger adjacency.
        weighted: Keep every candidate trigger edge with its (0/1) weight so gradients reach
            the adjacency — for models whose layers take ``edge_weight`` (every registered
            graph victim: GCN, GIN, SAGE, GAT). Without it only edges present in the forward
            pass are added, unweighted (a model without edge weights: the structure then gets
            no gradient, the features still do).

    Returns:
        ``(x, edge_index, edge_weight)`` for ``model(x, edge_index, slots.batch.batch,
        edge_weight)``; ``edge_weight`` is ``None`` when ``weighted`` is false. The edges are
        the batch's remaining edges, then the trigger's (every ordered pair ``i != j`` in
        row-major order, graph by graph).
    """
    n = slots.slots.size(1)
    x = slots.batch.x.clone()
    x[slots.slots.view(-1)] = features.reshape(-1, x.size(1)).to(x.dtype)
    ii, jj = torch.where(~torch.eye(n, dtype=torch.bool))
    src = slots.slots[:, ii].reshape(-1)
    dst = slots.slots[:, jj].reshape(-1)
    weight = adjacency[:, ii, jj].reshape(-1)
    base = slots.base_edge_index
    if weighted:
        edge_index = torch.cat([base, torch.stack([src, dst])], dim=1)
        edge_weight = torch.cat([weight.new_ones(base.size(1)), weight])
        return x, edge_index, edge_weight
    keep = weight.detach() > 0.5
    edge_index = torch.cat([base, torch.stack([src[keep], dst[keep]])], dim=1)
    return x, edge_index, None


def triggered_graphs(slots: TriggerSlots, features: Tensor, adjacency: Tensor) -> list[Data]:
    """Plain (detached, binary) ``Data`` copies of the batch's graphs with their trigger."""
    x, edge_index, _ = embed_trigger(slots, features.detach(), adjacency.detach(), weighted=False)
    batch = slots.batch
    out = []
    for i in range(batch.num_graphs):
        lo, hi = int(batch.ptr[i]), int(batch.ptr[i + 1])
        mask = (edge_index[0] >= lo) & (edge_index[0] < hi)
        out.append(
            Data(x=x[lo:hi].clone(), edge_index=edge_index[:, mask] - lo, y=batch.y[i : i + 1])
        )
    return out


def seed_from(generator: torch.Generator | None) -> int:
    """A seed for ``torch.random.fork_rng`` drawn from ``generator`` (31 bits).

    torch's module initialisation and some library code (GNNExplainer's mask, PGExplainer's
    MLP) draw only from torch's global generator; the allowed pattern is to run them inside
    ``torch.random.fork_rng()`` seeded from this value, so that the draw comes from the
    handed generator and the caller's global state is restored afterwards.
    """
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
