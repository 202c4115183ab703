"""A frozen copy of the trigger code as it was before the shared trigger layer (commit
e66568b: ``attacks/gta.py``, ``defenses/trigger_recovery.py``, ``attacks/importance.py``),
kept only so that ``test_trigger_layer.py`` can show the new layer computes the same
tensors. Not imported by the package."""

# ruff: noqa

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import GNNExplainer

from gnnbackdoor.attacks.feature_domain import FeatureDomain
from gnnbackdoor.models.base import GraphClassifier

MAX_LOGIT = 5.0


class GTATriggerGenerator(nn.Module):
    """GTA's two generators over the chosen nodes' ``[k, k]`` sub-adjacency and ``[k, F]``
    features: topology logits ``[k, k]`` (symmetric, no self-loops) and features ``[k, F]``
    projected into ``domain`` (the clean node features' domain, see
    :mod:`~gnnbackdoor.attacks.feature_domain`)."""

    def __init__(self, size: int, num_features: int, hidden: int, domain: FeatureDomain) -> None:
        super().__init__()
        self.size = size
        self.num_features = num_features
        self.domain = domain
        width = size * size + size * num_features
        self.topology = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, size * size)
        )
        self.features = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, size * num_features)
        )
        self.register_buffer("off_diagonal", 1 - torch.eye(size))

    def forward(self, adjacency: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``adjacency [B, k, k]``, ``x [B, k, F]`` -> soft edges ``[B, k, k]`` (hard values,
        straight-through gradients) and features ``[B, k, F]``."""
        batch = adjacency.size(0)
        inputs = torch.cat([adjacency.reshape(batch, -1), x.reshape(batch, -1)], dim=1)
        logits = self.topology(inputs).view(batch, self.size, self.size)
        probs = torch.sigmoid((logits + logits.transpose(1, 2)) / 2) * self.off_diagonal
        hard = (probs > 0.5).float()
        edges = hard + probs - probs.detach()
        raw = self.features(inputs).view(batch, self.size, self.num_features)
        features = self.domain(raw)
        return edges, features


def sub_adjacency(graph: Data, positions: Tensor) -> Tensor:
    """The ``[k, k]`` 0/1 adjacency among ``positions`` (in their order)."""
    k = positions.numel()
    local = torch.full((int(graph.num_nodes),), -1, dtype=torch.long)
    local[positions] = torch.arange(k)
    src, dst = local[graph.edge_index[0]], local[graph.edge_index[1]]
    inside = (src >= 0) & (dst >= 0)
    adjacency = torch.zeros(k, k)
    adjacency[src[inside], dst[inside]] = 1.0
    return adjacency


def gta_differentiable_batch(
    net, size, items: Sequence[tuple[Data, Tensor]], model: GraphClassifier
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """One batch of triggered graphs whose trigger edges (as weights) and features keep
    their graph to the generators."""
    k = size
    adjacency = torch.stack([sub_adjacency(g, pos) for g, pos in items])
    x_in = torch.stack([g.x[pos] for g, pos in items])
    edges, features = net(adjacency, x_in)
    rows, cols = torch.triu_indices(k, k, offset=1)
    use_weight = model.supports_edge_weight
    xs, indices, weights, batches = [], [], [], []
    offset = 0
    for b, (graph, pos) in enumerate(items):
        n = int(graph.num_nodes)
        chosen = torch.zeros(n, dtype=torch.bool)
        chosen[pos] = True
        ei = graph.edge_index
        keep = ei[:, ~(chosen[ei[0]] & chosen[ei[1]])]
        pair_w = edges[b, rows, cols]
        if use_weight:
            src, dst, w = pos[rows], pos[cols], pair_w
        else:
            on = pair_w.detach() > 0.5
            src, dst, w = pos[rows[on]], pos[cols[on]], pair_w[on]
        trig = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
        indices.append(torch.cat([keep, trig], dim=1) + offset)
        weights.append(torch.cat([torch.ones(keep.size(1)), w, w]))
        xs.append(graph.x.index_put((pos,), features[b].to(graph.x.dtype)))
        batches.append(torch.full((n,), b, dtype=torch.long))
        offset += n
    weight = torch.cat(weights) if use_weight else None
    return torch.cat(xs), torch.cat(indices, dim=1), weight, torch.cat(batches)


def _batch_of(graphs: Sequence[Data]) -> Batch:
    return Batch.from_data_list([Data(x=g.x, edge_index=g.edge_index, y=g.y) for g in graphs])


def straight_through_adjacency(logits: Tensor) -> Tensor:
    """A binary, symmetric, zero-diagonal adjacency ``[..., n, n]`` from real ``logits``,
    with the straight-through gradient of ``sigmoid((L + Lᵀ) / 2)``.

    Forward: ``1[p > 0.5]`` off the diagonal; backward: ``∂/∂p`` passes through unchanged.
    """
    sym = (logits + logits.transpose(-1, -2)) / 2
    prob = torch.sigmoid(sym)
    hard = (prob > 0.5).to(prob.dtype)
    n = logits.size(-1)
    off_diagonal = 1 - torch.eye(n, dtype=prob.dtype, device=prob.device)
    return (hard + (prob - prob.detach())) * off_diagonal  # exactly 0/1 forward


class RecoveryTriggerGenerator(nn.Module):
    """Eq. 6: ``X_t = MLP_f(X_s)``, ``A_t = MLP_a(X_s)`` from the ``n`` slot features.

    Args:
        num_nodes: ``n``, nodes of the trigger.
        num_features: ``F``, node feature width.
        hidden: Width of the shared hidden layer.
        low: ``[F]`` smallest value of each feature on clean graphs.
        high: ``[F]`` largest value of each feature on clean graphs.
        feature_mode: How trigger features are kept realistic (our choice; the paper leaves
            ``MLP_f``'s output unconstrained): ``onehot`` — a one-hot row, binarised in the
            forward pass with a straight-through softmax gradient, like the adjacency
            (for one-hot node labels); ``simplex`` — a softmax row; ``range`` — each feature
            in ``[low, high]`` by a scaled sigmoid (continuous attributes); ``keep`` — the
            slots keep their own features and only the structure is generated.
    """

    def __init__(
        self,
        num_nodes: int,
        num_features: int,
        hidden: int,
        low: Tensor,
        high: Tensor,
        feature_mode: str = "range",
    ):
        super().__init__()
        self.n, self.f = num_nodes, num_features
        self.feature_mode = feature_mode
        self.body = nn.Sequential(nn.Linear(num_nodes * num_features, hidden), nn.ReLU())
        self.feature_head = nn.Linear(hidden, num_nodes * num_features)
        self.structure_head = nn.Linear(hidden, num_nodes * num_nodes)
        self.register_buffer("low", low.clone().float())
        self.register_buffer("span", (high - low).clone().float())

    def forward(self, slot_features: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, n, F]`` slot features -> trigger features ``[B, n, F]`` and binary
        adjacency ``[B, n, n]`` (straight-through)."""
        h = self.body(slot_features.reshape(slot_features.size(0), -1))
        raw = self.feature_head(h).view(-1, self.n, self.f)
        if self.feature_mode == "keep":
            feats = slot_features + 0 * raw  # structure-only trigger (keeps the graph in autograd)
        elif self.feature_mode in ("onehot", "simplex"):
            soft = torch.softmax(raw, dim=-1)
            if self.feature_mode == "onehot":
                hard = F.one_hot(soft.argmax(-1), self.f).to(soft.dtype)
                feats = hard + (soft - soft.detach())
            else:
                feats = soft
        else:
            feats = self.low + self.span * torch.sigmoid(raw)
        adjacency = straight_through_adjacency(self.structure_head(h).view(-1, self.n, self.n))
        return feats, adjacency


@dataclass
class TriggerSlots:
    """Graphs batched together with the ``n`` node positions their trigger replaces.

    Attributes:
        batch: The clean graphs as one PyG ``Batch``.
        slots: ``[B, n]`` batch-level node indices, ascending importance per graph.
        base_edge_index: The batch's edges without those among a graph's own slots.
    """

    batch: Batch
    slots: Tensor
    base_edge_index: Tensor

    @classmethod
    def build(cls, graphs: Sequence[Data], positions: Sequence[Tensor]) -> TriggerSlots:
        """``positions[i]``: the ``n`` local node indices of graph ``i`` to replace."""
        batch = _batch_of(graphs)
        slots = torch.stack([p + batch.ptr[i] for i, p in enumerate(positions)])
        in_slot = torch.zeros(batch.num_nodes, dtype=torch.bool)
        in_slot[slots.view(-1)] = True
        src, dst = batch.edge_index
        internal = in_slot[src] & in_slot[dst] & (batch.batch[src] == batch.batch[dst])
        return cls(batch, slots, batch.edge_index[:, ~internal])

    def slot_features(self) -> Tensor:
        return self.batch.x[self.slots]

    def select(self, index: Tensor) -> TriggerSlots:
        """The sub-batch of graphs ``index``."""
        graphs = self.batch.index_select(index)
        positions = [self.slots[int(i)] - self.batch.ptr[int(i)] for i in index.view(-1)]
        return TriggerSlots.build(graphs, positions)


def embed_trigger(
    slots: TriggerSlots, features: Tensor, adjacency: Tensor, weighted: bool = True
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The Montage of Eq. 5 on a whole batch: slot features become ``features`` and the
    edges among the slots become ``adjacency``; edges to the rest of the graph stay.

    Args:
        slots: Graphs and their trigger positions.
        features: ``[B, n, F]`` trigger features.
        adjacency: ``[B, n, n]`` binary (straight-through) trigger adjacency.
        weighted: Keep every candidate trigger edge with its (0/1) weight so gradients reach
            the adjacency — for models whose layers take ``edge_weight`` (GIN, GCN). Without
            it only edges present in the forward pass are added, unweighted (GAT, SAGE: the
            structure then gets no gradient, the features still do).

    Returns:
        ``(x, edge_index, edge_weight)`` for ``model(x, edge_index, batch, edge_weight)``;
        ``edge_weight`` is ``None`` when ``weighted`` is false.
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


@torch.no_grad()
def _predicted(model: GraphClassifier, batch: Batch) -> Tensor:
    return model(batch.x, batch.edge_index, batch.batch).argmax(-1)


def _pyg_explainer_scores(model: GraphClassifier, batch: Batch, method: str, epochs: int) -> Tensor:
    from torch_geometric.explain import Explainer
    from torch_geometric.explain.algorithm import GNNExplainer, PGExplainer

    model_config = {
        "mode": "multiclass_classification",
        "task_level": "graph",
        "return_type": "raw",
    }
    if method == "gnnexplainer":
        explainer = Explainer(
            model,
            algorithm=GNNExplainer(epochs=epochs),
            explanation_type="model",
            node_mask_type="object",
            edge_mask_type=None,
            model_config=model_config,
        )
        explanation = explainer(batch.x, batch.edge_index, batch=batch.batch)
        return explanation.node_mask.detach().view(-1)
    # PGExplainer: phenomenon explanations of the model's own predictions, edge masks only.
    target = _predicted(model, batch)
    explainer = Explainer(
        model,
        algorithm=PGExplainer(epochs=epochs, lr=0.003),
        explanation_type="phenomenon",
        edge_mask_type="object",
        model_config=model_config,
    )
    for epoch in range(epochs):
        explainer.algorithm.train(
            epoch, model, batch.x, batch.edge_index, target=target, batch=batch.batch
        )
    explanation = explainer(batch.x, batch.edge_index, target=target, batch=batch.batch)
    edge_mask = explanation.edge_mask.detach()
    total = torch.zeros(batch.num_nodes).index_add_(0, batch.edge_index[0], edge_mask)
    count = torch.zeros(batch.num_nodes).index_add_(
        0, batch.edge_index[0], torch.ones_like(edge_mask)
    )
    return total / count.clamp_min(1)


class _Wrapped(torch.nn.Module):
    """``model`` as ``(x, edge_index) -> logits`` for ``Explainer``, with the logits scaled
    (per graph, by a constant that keeps the prediction) to at most ``MAX_LOGIT`` in
    magnitude: a confident model (GIN's sum readout gives logits in the hundreds) saturates
    the softmax, GNNExplainer's loss then has no gradient and every node gets the same
    score."""

    def __init__(self, model: GraphClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        logits = self.model(x, edge_index, None)
        scale = MAX_LOGIT / logits.detach().abs().max().clamp(min=MAX_LOGIT)
        return logits * scale


def gnnexplainer_scores(
    model: GraphClassifier, graph: Data, epochs: int, generator: torch.Generator
) -> Tensor:
    """GNNExplainer's object-level node mask for the model's own prediction on ``graph``.

    The explainer initialises its mask from torch's global RNG; it is re-seeded from
    ``generator`` (and restored afterwards) so that the run stays reproducible.
    """
    was_training = model.training
    # eval mode: ``Explainer`` restores the wrapper's own mode afterwards, which would
    # otherwise leave ``model`` in training mode (dropout on) for whoever uses it next
    explainer = Explainer(
        model=_Wrapped(model).eval(),
        algorithm=GNNExplainer(epochs=epochs),
        explanation_type="model",
        node_mask_type="object",
        edge_mask_type=None,
        model_config={
            "mode": "multiclass_classification",
            "task_level": "graph",
            "return_type": "raw",
        },
    )
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        explanation = explainer(graph.x, graph.edge_index)
    model.train(was_training)
    return explanation.node_mask.detach().view(-1)  # (the saliency fallback is not frozen)
