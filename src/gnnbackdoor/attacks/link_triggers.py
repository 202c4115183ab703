"""Link-Backdoor's trigger: a small subgraph on a target link's two end nodes and ``m`` trigger
nodes, attached to many target links at once, and its gradient optimisation (Eq. 2-7).

Roles. A trigger copy at target link ``(u, v)`` has ``2 + m`` role slots: slot 0 is ``u``,
slot 1 is ``v`` and slots ``2 .. m+1`` are the trigger nodes (injected nodes for Link-Backdoor;
existing nodes for the ablation Link-Backdoor_no-inj). A *candidate pair* is a pair of slots of
which at least one is a trigger node (Sec. 4.2: ``(i ∪ j) ∩ N_inj ≠ Ø``); the pair ``(u, v)``
is the target link itself and never part of the trigger. There are ``P = 2m + m(m-1)/2``
candidate pairs (5 for ``m = 2``).

A :class:`TriggerPattern` is the trigger ``g = (A_g, X_g)`` of Eq. 3: which candidate pairs are
links (``A_g``, at most ``Q``) and the trigger nodes' features (``X_g``). One pattern is
replicated at every target link (Algorithm 1 returns one trigger ``g``), so the backdoored model
can learn it and the attacker can attach it to any new target link at inference time.

Scalability (issue 3): gradients are taken with respect to *edge weights* of the candidate pairs
only, appended to the real ``edge_index`` (real edges keep weight 1) and evaluated for all target
links in one forward pass; there is never a dense ``N × N`` adjacency. A candidate with weight 0
contributes nothing to GCN's normalisation, so the weighted graph equals the discrete one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.models.base import LinkPredictor


def candidate_pairs(m: int) -> Tensor:
    """Role pairs ``[2, P]`` (``i < j``) that touch at least one trigger node (slots >= 2):
    ``(u, w_k)`` and ``(v, w_k)`` for every ``k``, then ``(w_k, w_l)`` for ``k < l``."""
    pairs = [(0, 2 + k) for k in range(m)] + [(1, 2 + k) for k in range(m)]
    pairs += [(2 + k, 2 + j) for k in range(m) for j in range(k + 1, m)]
    return torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)


def clamp01(x: Tensor) -> Tensor:
    """Eq. 7's ``F(x) = ReLU(x) - ReLU(x - 1)``: clips to ``[0, 1]``."""
    return torch.relu(x) - torch.relu(x - 1)


@dataclass
class TriggerPattern:
    """The trigger ``g = (A_g, X_g)`` shared by every target link.

    Attributes:
        structure: Bool ``[P]``: which candidate pairs (see :func:`candidate_pairs`) are links;
            or ``[T, P]``, one row per copy, for a trigger generated per target link (GTA).
        features: ``[m, D]`` features of the trigger nodes in ``[0, 1]`` (``[T, m, D]`` per
            copy), or ``None`` when the trigger nodes are existing nodes that keep their own
            features (no-inj ablation).
        initial_features: ``[m, D]`` the features the trigger nodes started from; the feature
            budget counts entries that differ from them.
    """

    structure: Tensor
    features: Tensor | None
    initial_features: Tensor | None

    @property
    def m(self) -> int:
        pairs = self.structure.size(-1)
        # P = 2m + m(m-1)/2  <=>  m^2 + 3m - 2P = 0
        return round((-3 + (9 + 8 * pairs) ** 0.5) / 2)

    @property
    def num_links(self) -> int:
        return int(self.structure.sum())

    def feature_changes(self) -> Tensor:
        """``[m]`` number of feature entries of each trigger node that differ from its start."""
        if self.features is None or self.initial_features is None:
            return torch.zeros(self.m, dtype=torch.long)
        return (self.features != self.initial_features).sum(dim=1)

    def links(self) -> list[tuple[str, str]]:
        """The trigger's links as role names, e.g. ``[("u", "w1"), ("w1", "w2")]``."""
        names = ["u", "v"] + [f"w{k + 1}" for k in range(self.m)]
        pairs = candidate_pairs(self.m)[:, self.structure]
        return [(names[int(i)], names[int(j)]) for i, j in pairs.t()]


@dataclass
class TriggerPlacement:
    """Where copies of a trigger sit: one row of ``2 + m`` node ids per target link.

    Attributes:
        slots: ``[T, 2 + m]`` node ids: ``u``, ``v``, then the trigger nodes.
        num_injected: How many nodes are appended after the base graph's nodes (0 for no-inj).
        allowed: Optional bool ``[T, P]``: candidate pairs a copy may use (no-inj: not pairs
            that are already edges); ``None``: all.
    """

    slots: Tensor
    num_injected: int
    allowed: Tensor | None = None

    @classmethod
    def injected(cls, targets: Tensor, num_nodes: int, m: int) -> TriggerPlacement:
        """Eq. 2 (``Gen_g``): ``m`` new nodes per target link, numbered from ``num_nodes``."""
        num_targets = targets.size(1)
        new = num_nodes + torch.arange(num_targets * m, dtype=torch.long).view(num_targets, m)
        return cls(torch.cat([targets.t(), new], dim=1), num_targets * m)

    @classmethod
    def existing(cls, targets: Tensor, hosts: Tensor) -> TriggerPlacement:
        """No-inj ablation: ``hosts`` ``[T, m]`` are existing nodes used as trigger nodes."""
        return cls(torch.cat([targets.t(), hosts], dim=1), 0)

    @property
    def num_targets(self) -> int:
        return int(self.slots.size(0))

    def pair_nodes(self, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """Node ids ``([T, P], [T, P])`` of each target's candidate pairs."""
        return self.slots[:, pairs[0]], self.slots[:, pairs[1]]

    def links_mask(self, structure: Tensor) -> Tensor:
        """Bool ``[T, P]``: the links each copy actually has (``structure`` where allowed);
        ``structure`` is ``[P]`` (shared) or ``[T, P]`` (one row per copy)."""
        if structure.dim() == 2:
            mask = structure
        else:
            mask = structure.unsqueeze(0).expand(self.num_targets, -1)
        return mask if self.allowed is None else mask & self.allowed


def trigger_edges(placement: TriggerPlacement, structure: Tensor) -> Tensor:
    """The trigger links of every copy, both directions, ``[2, 2 * T * |A_g|]``."""
    src, dst = placement.pair_nodes(candidate_pairs(int(placement.slots.size(1)) - 2))
    mask = placement.links_mask(structure)
    src, dst = src[mask], dst[mask]
    return torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])


def node_features(x: Tensor, placement: TriggerPlacement, features: Tensor | None) -> Tensor:
    """``x`` with the injected nodes' rows appended (one copy of ``features`` ``[m, D]`` per
    target, or the copies' own rows when ``features`` is ``[T, m, D]``)."""
    if placement.num_injected == 0:
        return x
    assert features is not None
    if features.dim() == 3:
        return torch.cat([x, features.to(x.dtype).reshape(-1, x.size(1))], dim=0)
    return torch.cat([x, features.to(x.dtype).repeat(placement.num_targets, 1)], dim=0)


def attach(graph: Data, placement: TriggerPlacement, pattern: TriggerPattern) -> Data:
    """Eq. 3 (the mixture ``M(G, g)``): a copy of ``graph`` with the trigger attached at every
    placement; existing node ids, features and links are unchanged, injected nodes appended.

    Other attributes of ``graph`` (``pos_edge_label_index``, ...) are carried over untouched.
    """
    out = graph.clone()
    added = trigger_edges(placement, pattern.structure)
    out.x = node_features(graph.x, placement, pattern.features)
    out.edge_index = torch.cat([graph.edge_index, added], dim=1)
    weight = getattr(graph, "edge_weight", None)
    if weight is not None:
        out.edge_weight = torch.cat([weight, weight.new_ones(added.size(1))])
    out.num_nodes = out.x.size(0)
    return out


@dataclass
class TriggerGradients:
    """Gradients of Eq. 5 for one update.

    Attributes:
        loss: The attack loss of Eq. 4 (before the update).
        structure: ``[T, P]`` Eq. 6's symmetrised structure gradient of each copy.
        directed: ``([T, P], [T, P])`` the raw gradients for ``(i, j)`` and ``(j, i)``.
        features: ``[1, m, D]`` Eq. 5's feature gradient of the trigger nodes, summed over the
            copies (they share the pattern), or ``None`` (no-inj).
    """

    loss: float
    structure: Tensor
    directed: tuple[Tensor, Tensor]
    features: Tensor | None


def attack_gradients(
    model: LinkPredictor,
    graph: Data,
    targets: Tensor,
    placement: TriggerPlacement,
    pattern: TriggerPattern,
    state: float = 1.0,
) -> TriggerGradients:
    """Eq. 4-6 in one forward and one backward pass over all target links.

    Every candidate pair of every copy is appended to ``graph.edge_index`` in both directions
    with a weight that requires grad (1 where the pattern has the link, 0 elsewhere); real
    edges keep weight 1. The injected nodes' feature rows require grad too.

    Args:
        model: The (surrogate or backdoored) link predictor; used in eval mode, unchanged.
        graph: The clean training graph (``x``, ``edge_index``).
        targets: ``[2, T]`` target links, aligned with ``placement``.
        placement: Where the copies sit.
        pattern: The current trigger.
        state: The attacker-chosen target-link state ``T̂`` (1: the link exists).
    """
    current = placement.links_mask(pattern.structure).to(graph.x.dtype)
    w_ij = current.clone().requires_grad_(True)  # A_g(i, j) of every copy
    w_ji = current.clone().requires_grad_(True)  # A_g(j, i): its own variable, for Eq. 6
    inputs = [w_ij, w_ji]
    x_trigger = None
    copies = None
    if placement.num_injected:
        assert pattern.features is not None
        # One leaf [m, D] expanded to every copy: autograd sums the copies' gradients (the
        # pattern is shared) without a [T * m, D] gradient tensor.
        x_trigger = pattern.features.to(graph.x.dtype).clone().requires_grad_(True)
        copies = x_trigger.unsqueeze(0).expand(placement.num_targets, -1, -1)
        inputs.append(x_trigger)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            loss = attack_loss(model, graph, targets, placement, (w_ij, w_ji), copies, state)
            grads = torch.autograd.grad(loss, inputs)  # Eq. 5
    finally:
        model.train(was_training)
    g_ij, g_ji = grads[0], grads[1]
    # Eq. 6: grad_Âg(i, j) = (grad_Ag(i, j) + grad_Ag(j, i)) / 2 for i != j (pairs never
    # include i = j, whose entry is 0).
    structure = (g_ij + g_ji) / 2
    features = None
    if x_trigger is not None:
        features = grads[2].unsqueeze(0)
    return TriggerGradients(float(loss.detach()), structure, (g_ij, g_ji), features)


def attack_loss(
    model: LinkPredictor,
    graph: Data,
    targets: Tensor,
    placement: TriggerPlacement,
    weights: Tensor | tuple[Tensor, Tensor],
    features: Tensor | None,
    state: float = 1.0,
) -> Tensor:
    """Eq. 4 for trigger copies given as edge weights: ``L_atk = 1/N Σ_n ||f(Ĝ, E_T)_n - T̂||²``.

    Every candidate pair of every copy is appended to ``graph.edge_index`` in both directions
    with its weight (0 = no link; real edges keep their weight), so the loss is differentiable
    with respect to the weights and the injected nodes' features (relaxed triggers: GTA) and
    equals the discrete trigger's loss for 0/1 weights (PSO's fitness). The caller chooses
    eval or train mode and whether gradients are recorded.

    Args:
        model: The trigger (clean, surrogate or backdoored) link predictor.
        graph: The clean training graph.
        targets: ``[2, T]`` target links, aligned with ``placement``.
        placement: Where the copies sit.
        weights: ``[T, P]`` weights of the candidate pairs, or a pair ``(w_ij, w_ji)`` of them
            for the two directions (Eq. 6 needs them apart).
        features: ``[T, m, D]`` injected nodes' features of every copy (``None``: no-inj).
        state: The attacker-chosen state ``T̂`` (1: the link exists).

    Returns:
        The scalar loss.
    """
    w_ij, w_ji = weights if isinstance(weights, tuple) else (weights, weights)
    src, dst = placement.pair_nodes(candidate_pairs(int(placement.slots.size(1)) - 2))
    edge_index = torch.cat(
        [
            graph.edge_index,
            torch.stack([src.reshape(-1), dst.reshape(-1)]),
            torch.stack([dst.reshape(-1), src.reshape(-1)]),
        ],
        dim=1,
    )
    base_weight = getattr(graph, "edge_weight", None)
    if base_weight is None:
        base_weight = graph.x.new_ones(graph.edge_index.size(1))
    if placement.allowed is not None:  # a pair that is already an edge stays out (weight 0)
        w_ij, w_ji = w_ij * placement.allowed, w_ji * placement.allowed
    edge_weight = torch.cat([base_weight, w_ij.reshape(-1), w_ji.reshape(-1)])
    x = graph.x
    if placement.num_injected:
        assert features is not None
        x = torch.cat([x, features.to(x.dtype).reshape(-1, x.size(1))], dim=0)
    z = model.encode(x, edge_index, edge_weight)
    probability = torch.sigmoid(model.score(z, targets))
    return ((probability - state) ** 2).mean()


def symmetric_gradient_matrix(gradients: TriggerGradients, m: int) -> Tensor:
    """Eq. 6 as a matrix: ``[T, 2 + m, 2 + m]`` with the symmetrised gradient at every candidate
    pair, zero on the diagonal and at the target link's own entry ``(u, v)``."""
    pairs = candidate_pairs(m)
    num_targets = gradients.structure.size(0)
    directed = torch.zeros(num_targets, 2 + m, 2 + m, dtype=gradients.structure.dtype)
    directed[:, pairs[0], pairs[1]] = gradients.directed[0]
    directed[:, pairs[1], pairs[0]] = gradients.directed[1]
    return (directed + directed.transpose(1, 2)) / 2


def update_pattern(
    pattern: TriggerPattern,
    gradients: TriggerGradients,
    max_links: int,
    feature_budget: int,
    feature_step: float = 1.0,
) -> TriggerPattern:
    """One trigger update (Eq. 7) of the shared pattern, within the budgets of Eq. 3.

    The pattern is shared by all copies, so its gradient is the sum of the copies' gradients
    (Eq. 4 averages over target links).

    Structure: ``A*_g = F(A_g - sign(grad_Âg))`` adds a link where the gradient is negative and
    removes one where it is positive; if more than ``max_links`` (Q) links remain, the links with
    the most negative gradient are kept.

    Features: ``X*_g = F(X_g - α sign(grad_Xg))``; if a trigger node then differs from its
    initial features in more than ``feature_budget`` (Q_X) entries, only the changed entries with
    the largest gradient magnitude are kept, the others go back to their initial value.
    """
    grad_a = gradients.structure.sum(dim=0)
    current = pattern.structure.to(grad_a.dtype)
    proposed = clamp01(current - torch.sign(grad_a)) > 0.5  # Eq. 7, first line
    structure = limit_links(proposed, grad_a, max_links)
    features = pattern.features
    if features is not None and gradients.features is not None:
        assert pattern.initial_features is not None
        grad_x = gradients.features.sum(dim=0)
        stepped = clamp01(features - feature_step * torch.sign(grad_x))  # Eq. 7, second line
        changed = stepped != pattern.initial_features
        over = changed.sum(dim=1) > feature_budget
        if bool(over.any()):
            priority = torch.where(changed, grad_x.abs(), torch.full_like(grad_x, -1.0))
            ranks = torch.argsort(torch.argsort(priority, dim=1, descending=True, stable=True))
            allowed = changed & (ranks < feature_budget)
            stepped = torch.where(allowed, stepped, pattern.initial_features)
        features = stepped
    return TriggerPattern(structure, features, pattern.initial_features)


def limit_links(proposed: Tensor, score: Tensor, max_links: int) -> Tensor:
    """Keep at most ``max_links`` of the ``proposed`` candidate links, lowest ``score`` (the
    gradient: most in favour of the link) first, and keep the trigger anchored at the target
    link: one link to ``u`` and one to ``v`` (the best of the proposed ones, else the best
    candidate). A trigger that touches neither end node cannot change the target link's score
    under any message-passing model, so an anchor is always kept (two when ``max_links >= 2``).
    """
    pairs = candidate_pairs_for(proposed.numel())
    anchors = []
    for end in (0, 1):
        touches = pairs[0] == end
        mine = touches & proposed if bool((touches & proposed).any()) else touches
        best = torch.where(mine, score, torch.inf).argmin()
        anchors.append(int(best))
    anchors.sort(key=lambda i: float(score[i]))
    keep = torch.zeros_like(proposed)
    for i in anchors[:max_links]:
        keep[i] = True
    rest = proposed & ~keep
    room = max_links - int(keep.sum())
    if room > 0 and bool(rest.any()):
        order = torch.argsort(torch.where(rest, score, torch.inf), stable=True)
        keep[order[: min(room, int(rest.sum()))]] = True
    return keep


def candidate_pairs_for(num_pairs: int) -> Tensor:
    """:func:`candidate_pairs` for the ``m`` with ``2m + m(m-1)/2 = num_pairs``."""
    m = round((-3 + (9 + 8 * num_pairs) ** 0.5) / 2)
    return candidate_pairs(m)
