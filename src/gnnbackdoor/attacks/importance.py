"""Node importance for trigger placement: explainer masks and network-importance metrics.

Exp-BA ranks nodes by an explainer's node mask on a pretrained (clean) model; Motif-BA ranks
them by a network-importance metric or by how much dropping a node lowers the model's
confidence. All functions return one score per node, ``[num_nodes]``, higher = more important.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import GNNExplainer, PGExplainer
from torch_geometric.utils import degree, subgraph, to_networkx

from gnnbackdoor.attacks.trigger_layer import seed_from
from gnnbackdoor.attacks.triggers import uninformative
from gnnbackdoor.models.base import GraphClassifier


class Importance(StrEnum):
    """How node importance is scored."""

    GNNEXPLAINER = "gnnexplainer"  # node mask of torch_geometric.explain's GNNExplainer
    SALIENCY = "saliency"  # |d logit_pred / d x| summed over features (a gradient explainer)
    DEGREE = "degree"  # degree centrality
    BETWEENNESS = "betweenness"  # betweenness centrality (networkx)
    NODE_DROP = "node_drop"  # drop in the predicted class's probability when the node goes


#: Edges per forward pass when scoring node drops.
MAX_BATCH_EDGES = 500_000

#: Logits are scaled down to at most this magnitude before GNNExplainer sees them.
MAX_LOGIT = 5.0


class ExplainAlgorithm(StrEnum):
    """The ``torch_geometric.explain`` algorithms :func:`explain_node_scores` adapts."""

    GNNEXPLAINER = "gnnexplainer"  # object-level node mask (Ying et al. 2019)
    PGEXPLAINER = "pgexplainer"  # edge masks (Luo et al. 2020); a node: mean of its edges'


class _Wrapped(torch.nn.Module):
    """``model`` as ``(x, edge_index, batch) -> logits`` for ``Explainer``.

    With ``max_logit`` each graph's logits are scaled (by a constant that keeps the
    prediction) to at most ``max_logit`` in magnitude: a confident model (GIN's sum readout
    gives logits in the hundreds) saturates the softmax, GNNExplainer's loss then has no
    gradient and every node gets the same score. ``None`` passes the logits unchanged."""

    def __init__(self, model: GraphClassifier, max_logit: float | None = MAX_LOGIT) -> None:
        super().__init__()
        self.model = model
        self.max_logit = max_logit

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None) -> Tensor:
        logits = self.model(x, edge_index, batch)
        if self.max_logit is None:
            return logits
        peak = logits.detach().abs().amax(dim=-1, keepdim=True)
        return logits * (self.max_logit / peak.clamp(min=self.max_logit))


_MODEL_CONFIG = {
    "mode": "multiclass_classification",
    "task_level": "graph",
    "return_type": "raw",
}


def explain_node_scores(
    model: GraphClassifier,
    graphs: Sequence[Data],
    algorithm: ExplainAlgorithm | str,
    epochs: int,
    generator: torch.Generator,
    max_logit: float | None = MAX_LOGIT,
    pg_lr: float = 0.003,
) -> list[Tensor]:
    """Node importance of each of ``graphs`` by a ``torch_geometric.explain`` algorithm,
    explaining the model's own predictions, all graphs in one batch (the explainers' losses
    decompose over graphs; GNNExplainer's mask penalties are means, so batching only
    rescales them uniformly). The one adapter over ``torch_geometric.explain`` for Exp-BA
    (placement) and GCleaner (trigger recovery).

    Args:
        model: The graph classifier; left in the training mode it came in.
        graphs: Graphs to explain (``x``, ``edge_index``).
        algorithm: ``gnnexplainer``: GNNExplainer with an object-level node mask, ``epochs``
            optimisation steps; ``pgexplainer``: PGExplainer (phenomenon explanations of the
            predicted class) trained ``epochs`` epochs at ``pg_lr``, a node scores the mean
            mask of its outgoing edges.
        epochs: Optimisation epochs of the explainer.
        generator: The random source. GNNExplainer initialises its mask, PGExplainer its
            MLP, from torch's global generator only: the explainer runs inside
            ``torch.random.fork_rng()`` seeded from one value drawn from ``generator`` (the
            caller's global state is restored).
        max_logit: Scale each graph's logits to at most this magnitude first (see
            :class:`_Wrapped`); ``None``: raw logits.

    Returns:
        One score tensor ``[num_nodes]`` per graph, higher = more important.
    """
    algorithm = ExplainAlgorithm(algorithm)
    batch = Batch.from_data_list([Data(x=g.x, edge_index=g.edge_index) for g in graphs])
    sizes = [int(g.num_nodes) for g in graphs]
    was_training = model.training
    # eval mode: ``Explainer`` restores the wrapper's own mode afterwards, which would
    # otherwise leave ``model`` in training mode (dropout on) for whoever uses it next
    wrapped = _Wrapped(model, max_logit).eval()
    seed = seed_from(generator)
    try:
        with torch.random.fork_rng():  # the explainers draw from the global RNG only
            torch.manual_seed(seed)
            if algorithm is ExplainAlgorithm.GNNEXPLAINER:
                scores = _gnnexplainer_mask(wrapped, batch, epochs)
            else:
                scores = _pgexplainer_scores(wrapped, batch, epochs, pg_lr)
    finally:
        model.train(was_training)
    return list(scores.split(sizes))


def _gnnexplainer_mask(wrapped: _Wrapped, batch: Batch, epochs: int) -> Tensor:
    explainer = Explainer(
        model=wrapped,
        algorithm=GNNExplainer(epochs=epochs),
        explanation_type="model",
        node_mask_type="object",
        edge_mask_type=None,
        model_config=_MODEL_CONFIG,
    )
    explanation = explainer(batch.x, batch.edge_index, batch=batch.batch)
    return explanation.node_mask.detach().view(-1)


def _pgexplainer_scores(wrapped: _Wrapped, batch: Batch, epochs: int, lr: float) -> Tensor:
    with torch.no_grad():
        target = wrapped(batch.x, batch.edge_index, batch.batch).argmax(-1)
    explainer = Explainer(
        model=wrapped,
        algorithm=PGExplainer(epochs=epochs, lr=lr),
        explanation_type="phenomenon",
        edge_mask_type="object",
        model_config=_MODEL_CONFIG,
    )
    for epoch in range(epochs):
        explainer.algorithm.train(
            epoch, wrapped, batch.x, batch.edge_index, target=target, batch=batch.batch
        )
    explanation = explainer(batch.x, batch.edge_index, target=target, batch=batch.batch)
    edge_mask = explanation.edge_mask.detach()
    total = torch.zeros(batch.num_nodes).index_add_(0, batch.edge_index[0], edge_mask)
    count = torch.zeros(batch.num_nodes).index_add_(
        0, batch.edge_index[0], torch.ones_like(edge_mask)
    )
    return total / count.clamp_min(1)


def gnnexplainer_scores(
    model: GraphClassifier, graph: Data, epochs: int, generator: torch.Generator
) -> Tensor:
    """GNNExplainer's object-level node mask for the model's own prediction on ``graph``
    (:func:`explain_node_scores` with logits scaled to ``MAX_LOGIT``), falling back to
    gradient saliency when every node scores alike."""
    (scores,) = explain_node_scores(
        model, [graph], ExplainAlgorithm.GNNEXPLAINER, epochs, generator, MAX_LOGIT
    )
    if uninformative(scores):
        # still no signal (e.g. a prediction saturated even at MAX_LOGIT): use gradients
        return saliency_scores(model, graph)
    return scores


def saliency_scores(model: GraphClassifier, graph: Data) -> Tensor:
    """Gradient saliency: ``sum_f |d logit[pred] / d x[v, f]|`` for each node ``v``."""
    was_training = model.training
    model.eval()
    x = graph.x.detach().clone().requires_grad_(True)
    logits = model(x, graph.edge_index, None)
    logits[0, logits[0].argmax()].backward()
    model.train(was_training)
    return x.grad.abs().sum(dim=1)


@torch.no_grad()
def node_drop_scores(model: GraphClassifier, graph: Data) -> Tensor:
    """Fall in the probability of the predicted class when each node (with its edges) is
    dropped; all ``num_nodes`` reduced graphs go through the model in one batch."""
    was_training = model.training
    model.eval()
    n = int(graph.num_nodes)
    probs = torch.softmax(model(graph.x, graph.edge_index, None), dim=-1)[0]
    predicted = int(probs.argmax())
    reduced = []
    for v in range(n):
        keep = torch.ones(n, dtype=torch.bool)
        keep[v] = False
        edge_index, _ = subgraph(keep, graph.edge_index, relabel_nodes=True, num_nodes=n)
        reduced.append(Data(x=graph.x[keep], edge_index=edge_index, num_nodes=n - 1))
    # chunk so that one forward pass holds at most ~MAX_BATCH_EDGES edges (a 500-node COLLAB
    # graph would otherwise put 500 copies of 80k edges through the model at once)
    per_copy = max(int(graph.edge_index.size(1)), 1)
    chunk = max(1, MAX_BATCH_EDGES // per_copy)
    dropped_parts = []
    for start in range(0, n, chunk):
        batch = Batch.from_data_list(reduced[start : start + chunk])
        logits = model(batch.x, batch.edge_index, batch.batch)
        dropped_parts.append(torch.softmax(logits, dim=-1)[:, predicted])
    dropped = torch.cat(dropped_parts)
    model.train(was_training)
    return probs[predicted] - dropped


def node_scores(
    kind: Importance,
    graph: Data,
    model: GraphClassifier | None = None,
    generator: torch.Generator | None = None,
    explainer_epochs: int = 50,
) -> Tensor:
    """Importance of each node of ``graph`` by ``kind`` (``[num_nodes]``)."""
    if kind is Importance.DEGREE:
        return degree(graph.edge_index[0], int(graph.num_nodes))
    if kind is Importance.BETWEENNESS:
        nxg = to_networkx(graph, to_undirected=True)
        scores = nx.betweenness_centrality(nxg)
        return torch.tensor([scores[v] for v in range(int(graph.num_nodes))])
    if model is None:
        raise ValueError(f"importance {kind.value!r} needs a model")
    if kind is Importance.SALIENCY:
        return saliency_scores(model, graph)
    if kind is Importance.NODE_DROP:
        return node_drop_scores(model, graph)
    if generator is None:
        raise ValueError(f"importance {kind.value!r} needs a generator")
    return gnnexplainer_scores(model, graph, explainer_epochs, generator)
