"""Randomized smoothing by structural subsampling: the ``RS`` baseline of GraphProt (Tables
1-2) and the ``Randomized-Smoothing`` baseline of GCleaner (Table III).

Sources.

* Zhang, Jia, Wang and Gong, "Backdoor Attacks to Graph Neural Networks" (SACMAT 2021),
  Section 6: a randomized-subsampling smoothed classifier evaluated as a certified defense
  against subgraph triggers (the defense "is effective in some cases but ineffective in
  other cases").
* Wang, Jia, Cao and Gong, "Certified Robustness of Graph Neural Networks against
  Adversarial Structural Perturbation" (KDD 2021): randomized smoothing over the graph
  structure, a Monte-Carlo majority vote, Clopper-Pearson bounds on the vote shares.
* GraphProt Sec. 5.1 describes its RS baseline as "introducing random noise into the graph
  structure and applying classifier smoothing (Wang et al. 2021)"; GCleaner Sec. 5.2 and
  App. F describe theirs as random sampling in which "a larger trigger size results in a
  higher likelihood of sampling trigger nodes" -- node subsampling.

What this shield does, per input graph ``G`` with ``n`` nodes:

1. draws ``N = num_samples`` random subgraphs: ``unit="node"`` (default, GCleaner's reading)
   keeps each node independently with probability ``beta = keep_rate`` and takes the induced
   subgraph; ``unit="edge"`` keeps every node and each undirected edge with probability
   ``beta`` (Wang et al.'s structural noise restricted to deletions: a black box cannot be
   fed the ``n^2`` node pairs Wang et al. flip);
2. asks the black box for the label of every non-empty subgraph (all subgraphs of all graphs
   of a call in one query, up to ``query_bytes`` of subgraphs a query); an empty draw is an
   abstention (no class);
3. answers the most frequent class (ties to the smaller index; :data:`REJECTED` when every
   draw abstained, e.g. a graph without nodes);
4. certifies: ``p_A`` = Clopper-Pearson lower bound (one-sided, level ``1 - alpha``;
   ``scipy.stats.binomtest``) of the winner's share of the ``N`` draws; ``p_B <= 1 - p_A``.
   Couple the draws on ``G`` and on any ``G'`` that differs from it in at most ``e`` units
   (nodes whose presence, features or incident edges differ; or node pairs) by giving each
   unit the same coin: the two subgraphs coincide unless a differing unit is kept, which
   happens with probability ``delta(e) = 1 - (1 - beta)^e``. So the smoothed label is the
   same on every such ``G'`` while ``p_A - delta(e) > p_B + delta(e)``, i.e.
   ``(1 - beta)^e > 3/2 - p_A``. The certified radius is the largest such ``e`` (``-1``:
   nothing certified, ``p_A <= 1/2``). This is the subsampling certificate of Zhang et al.
   with Bernoulli rather than fixed-size sampling, so it does not depend on ``n`` (an
   injected trigger changes ``n``). A triggered graph whose radius reaches its trigger's
   size provably gets the label its clean graph gets.

Decisions and deviations (the papers leave them open or they do not fit a test-time shield):

* Only the test-time half: Zhang et al. and Wang et al. also train the base classifier on
  subsampled graphs; here the base classifier is the given (backdoored) black box, as in an
  :class:`~gnnbackdoor.defenses.base.InputShield`. Victims trained with
  ``train.subgraph_augmentation`` come closest to the trained half.
* As in Wang et al.'s experiments, the same ``N`` draws choose the label and bound its
  share (Cohen et al.'s separate selection draws would double the queries).
* ``N`` is 100 by default (Wang et al. use 10,000): the radius is then conservative, e.g.
  all 100 votes agreeing at ``alpha = 0.001`` gives ``p_A = 0.933``.
* Randomness: one seed per call (``predict(..., seed=)``, default ``random_state``); a
  graph's draws come from that seed's child keyed by the graph's contents (as GraphProt), so
  its answer does not depend on the rest of the batch. No global RNG is touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from scipy.stats import binomtest
from torch_geometric.data import Data

from gnnbackdoor.defenses.base import DEFENSES, InputShield, PredictFn, ShieldResult
from gnnbackdoor.defenses.graphprot import GraphProt, induced_subgraph
from gnnbackdoor.defenses.shielding import REJECTED, Unit, num_nodes, root_seed
from gnnbackdoor.settings import Fraction, NonNegativeInt, PositiveInt

UNITS = ("node", "edge")


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided ``1 - alpha`` Clopper-Pearson lower bound of a binomial proportion
    (``scipy.stats.binomtest(...).proportion_ci(method="exact")`` at level ``1 - 2 alpha``);
    0 for no trials or no successes."""
    if trials <= 0 or successes <= 0:
        return 0.0
    ci = binomtest(successes, trials).proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
    return float(ci.low)


def certified_radius(p_a_lower: float, keep_rate: float) -> int:
    """Largest ``e >= 0`` with ``(1 - keep_rate)^e > 3/2 - p_a_lower`` (module docstring);
    ``-1`` when ``p_a_lower <= 1/2``.

    Raises:
        ValueError: ``keep_rate`` outside (0, 1].
    """
    if not 0 < keep_rate <= 1:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
    bound = 1.5 - p_a_lower
    if bound >= 1:
        return -1
    if keep_rate == 1 or bound <= 0:  # bound <= 0 only if p_a_lower > 1.5: not a share
        return 0
    drop = 1 - keep_rate
    radius = max(0, math.ceil(math.log(bound) / math.log(drop)) - 1)
    while drop ** (radius + 1) > bound:  # guard the float rounding of the logarithms
        radius += 1
    while radius > 0 and not drop**radius > bound:
        radius -= 1
    return radius


def _bytes(graph: Data) -> int:
    """Bytes of ``graph``'s tensors."""
    return sum(v.numel() * v.element_size() for _, v in graph if torch.is_tensor(v))


@dataclass
class _Draws:
    """One input graph's subgraphs (``None`` for an empty draw) and their node lists."""

    subgraphs: list[Data | None]
    nodes: list[list[int]]


@DEFENSES.register("randomized-smoothing")
@dataclass
class RandomizedSmoothing(InputShield):
    """Smoothed majority vote over random structural subsamples, with a certificate.

    Attributes:
        num_samples: ``N``, subsampled graphs per input graph (>= 1).
        keep_rate: ``beta``, probability that a node (``unit="node"``) or an undirected edge
            (``unit="edge"``) is kept, in (0, 1].
        unit: ``node`` (induced subgraph of the kept nodes) or ``edge`` (all nodes, the kept
            edges).
        alpha: One-sided error of the Clopper-Pearson bound, in (0, 0.5).
        random_state: The default seed of :meth:`predict` (>= 0).
    """

    reference: ClassVar[str] = (
        "Zhang, Jia, Wang, Gong, Backdoor Attacks to Graph Neural Networks (2021); Wang, Jia, "
        "Cao, Gong, Certified Robustness of GNNs against Adversarial Structural Perturbation "
        "(2021)"
    )

    #: The most bytes of subgraph tensors (features and edges) held for one query: a call
    #: whose draws take more makes one query per run of whole graphs that fits (a graph's
    #: draws always go in one query; a graph's answer does not depend on the others of its
    #: query, see Randomness). Every dataset but COLLAB fits one query; COLLAB's 1,000 test
    #: graphs x 100 draws held at once took 15 GB of memory.
    query_bytes: ClassVar[int] = 1 << 30

    num_samples: PositiveInt = 100
    keep_rate: Fraction = 0.5
    unit: Unit = Unit.NODE
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.001
    random_state: NonNegativeInt = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._graphs = 0
        self._certified = 0
        self._radius_sum = 0
        self._rejected = 0

    def predict(
        self,
        predict_fn: PredictFn,
        graphs: Sequence[Data],
        *,
        seed: int | np.random.Generator | None = None,
    ) -> ShieldResult:
        """Smoothed labels of ``graphs`` with one call to ``predict_fn`` (more when the draws
        exceed :attr:`query_bytes`; none when no draw is non-empty).

        Args:
            predict_fn: The black box: a list of graphs in, one label each out.
            graphs: Graphs to classify (not modified).
            seed: An int seed (``None``: ``random_state``) or a ``numpy.random.Generator``
                from which one 128-bit seed is drawn.

        Returns:
            Labels ``[B]`` (:data:`REJECTED` where every draw was empty) and per graph:
            ``votes`` (class -> count), ``abstained`` (empty draws), ``p_a_lower``,
            ``certified_radius`` (in ``unit``s; ``-1``: none), ``unit``, and for
            :func:`~gnnbackdoor.metrics.shield.shield_diagnostics` ``subgraph_votes``
            (``-1`` for an empty draw), ``subgraph_nodes``, ``removed_nodes`` (none) and
            ``kept_nodes``.

        Raises:
            ValueError: ``predict_fn`` returns a number of labels other than the number of
                subgraphs sent, or a negative seed.
        """
        root = root_seed(seed, self.random_state)
        labels: list[int] = []
        details: list[dict[str, Any]] = []
        queries = sent = 0
        for run in self._runs(graphs, root):
            batch = [sub for _, plan in run for sub in plan.subgraphs if sub is not None]
            answers: list[int] = []
            if batch:
                answers = [int(v) for v in torch.as_tensor(predict_fn(batch)).view(-1).tolist()]
                queries += 1
                sent += len(batch)
                if len(answers) != len(batch):
                    raise ValueError(
                        f"predict_fn returned {len(answers)} labels for {len(batch)} subgraphs"
                    )
            position = 0
            for graph, plan in run:
                votes = []
                for sub in plan.subgraphs:
                    if sub is None:
                        votes.append(REJECTED)
                    else:
                        votes.append(answers[position])
                        position += 1
                label, detail = self._vote(votes)
                detail.update(
                    subgraph_votes=votes,
                    subgraph_nodes=plan.nodes,
                    removed_nodes=[],
                    kept_nodes=num_nodes(graph),
                )
                labels.append(label)
                details.append(detail)
        return ShieldResult(
            torch.tensor(labels, dtype=torch.long), details, queries, graphs_queried=sent
        )

    def _runs(
        self, graphs: Sequence[Data], root: np.random.SeedSequence
    ) -> Iterator[list[tuple[Data, _Draws]]]:
        """The graphs with their draws, in runs of whole graphs whose subgraphs take at most
        :attr:`query_bytes` (a graph larger than that alone), one query each."""
        run: list[tuple[Data, _Draws]] = []
        held = 0
        for graph in graphs:
            plan = self._draw(graph, root)
            size = sum(_bytes(sub) for sub in plan.subgraphs if sub is not None)
            if run and held + size > self.query_bytes:
                yield run
                run, held = [], 0
            run.append((graph, plan))
            held += size
        if run:
            yield run

    def describe(self) -> dict[str, Any]:
        """Over every graph this shield has answered: the share with a certificate
        (radius >= 0), their mean radius, and the share rejected."""
        if not self._graphs:
            return {}
        return {
            "rs_certified_fraction": self._certified / self._graphs,
            "rs_mean_certified_radius": (
                self._radius_sum / self._certified if self._certified else float("nan")
            ),
            "rs_rejected_fraction": self._rejected / self._graphs,
        }

    # -- steps ------------------------------------------------------------------------

    def _draw(self, graph: Data, root: np.random.SeedSequence) -> _Draws:
        n = num_nodes(graph)
        if n == 0:
            return _Draws([None] * self.num_samples, [[] for _ in range(self.num_samples)])
        rng = GraphProt.graph_rng(graph, root)
        x = graph.x.detach().cpu().float().numpy()
        edge_index = graph.edge_index.detach().cpu().numpy()
        subgraphs: list[Data | None] = []
        nodes: list[list[int]] = []
        if self.unit == "node":
            keep = rng.random((self.num_samples, n)) < self.keep_rate
            for row in keep:
                chosen = np.flatnonzero(row)
                nodes.append(chosen.tolist())
                subgraphs.append(
                    induced_subgraph(x, edge_index, chosen, None) if chosen.size else None
                )
            return _Draws(subgraphs, nodes)
        # edges: one coin per undirected pair {u, v}; self-loops are kept with their node
        low, high = np.minimum(edge_index[0], edge_index[1]), np.maximum(*edge_index)
        pairs, pair_of = np.unique(np.stack([low, high]), axis=1, return_inverse=True)
        pair_of = np.asarray(pair_of).reshape(-1)
        loops = pairs[0] == pairs[1]
        everyone = list(range(n))
        for row in rng.random((self.num_samples, pairs.shape[1])) < self.keep_rate:
            kept = (row | loops)[pair_of]
            sub = Data(
                x=torch.from_numpy(x.copy()),
                edge_index=torch.from_numpy(np.ascontiguousarray(edge_index[:, kept])),
            )
            subgraphs.append(sub)
            nodes.append(everyone)
        return _Draws(subgraphs, nodes)

    def _vote(self, votes: list[int]) -> tuple[int, dict[str, Any]]:
        counts: dict[int, int] = {}
        for vote in votes:
            if vote != REJECTED:
                counts[vote] = counts.get(vote, 0) + 1
        abstained = len(votes) - sum(counts.values())
        self._graphs += 1
        if not counts:
            self._rejected += 1
            label, p_lower, radius = REJECTED, 0.0, -1
        else:
            top = max(counts.values())
            label = min(c for c, k in counts.items() if k == top)
            p_lower = clopper_pearson_lower(top, len(votes), self.alpha)
            radius = certified_radius(p_lower, self.keep_rate)
        if radius >= 0:
            self._certified += 1
            self._radius_sum += radius
        return label, {
            "votes": {str(c): k for c, k in sorted(counts.items())},
            "abstained": abstained,
            "p_a_lower": p_lower,
            "certified_radius": radius,
            "unit": self.unit,
        }


def certificate_summary(result: ShieldResult) -> dict[str, float]:
    """Summary of a smoothing result's certificates: ``certified_fraction`` (radius >= 0),
    ``mean_certified_radius`` (over those), ``rejected_fraction``; empty for no graphs.

    Raises:
        KeyError: ``result`` is not from :class:`RandomizedSmoothing`.
    """
    radii = [int(d["certified_radius"]) for d in result.details]
    if not radii:
        return {}
    certified = [r for r in radii if r >= 0]
    return {
        "certified_fraction": len(certified) / len(radii),
        "mean_certified_radius": sum(certified) / len(certified) if certified else float("nan"),
        "rejected_fraction": float((result.labels == REJECTED).float().mean()),
    }
