"""GraphProt: a black-box, test-time shield for graph classifiers.

Yang, Zhou, Lai and Li, "Defense-as-a-Service: Black-box Shielding against Backdoored Graph
Models", Section 4 and Algorithm 1. Given only a prediction function (graphs in, labels out),
each input graph is

1. **filtered** (Eq. 1-2, Alg. 1 lines 1-2): the nodes are split in two by spectral clustering
   of the adjacency matrix and, separately, by a two-component Gaussian mixture on the node
   features; nodes in the smaller cluster of *both* are removed ("the overlapping segments are
   considered anomalous");
2. **sampled** into ``N`` subgraphs of the filtered graph ``G'`` (Alg. 1 lines 3-11):
   R keeps ``floor(p |V'|)`` random nodes (Eq. 3-4); T partitions ``V'`` by spectral
   clustering into ``floor(|V'| / N)`` clusters and takes one random node of each (Eq. 5-6);
   TF is T and keeps ``ceil(r d)`` random feature dimensions per subgraph, zeroing the others
   (Eq. 7);
3. **voted** (Eq. 8-9, Alg. 1 lines 13-17): majority of the subgraph labels, ties to the
   smaller class index.

All subgraphs of all graphs of a call go to the prediction function in one query.

Decisions the paper leaves open (see also ``docs/reproduction/graphprot.md``):

* Graphs with fewer than ``filter_min_nodes`` nodes are not filtered. A clustering whose two
  clusters have equal size (or one is empty) names no minority, so it removes nothing.
* Clustering is scikit-learn's, behind one interface (:class:`Clustering`):
  ``SpectralClustering(affinity="precomputed")`` on the adjacency (the eigenvectors of the
  ``k`` smallest eigenvalues of the normalised Laplacian, clustered by k-means; disconnected
  graphs are fine, isolated nodes get a tiny affinity to every node) and
  ``GaussianMixture(2, covariance_type, reg_covar)`` on the node features. A hand-written
  NumPy version (eigh + k-means++/Lloyd, EM) was faster but did not give the same
  partitions on representative graphs, so it was removed (``docs/graphprot_clustering.md``).
* The mixture uses diagonal covariances with ``gmm_reg_covar`` added (one-hot features make
  full covariances singular); ``covariance_type="spherical"`` is the other robust choice.
* Randomness: one seed per call (``predict(..., seed=)``, by default ``random_state``). Each
  graph's stream is that seed's ``numpy.random.SeedSequence`` child keyed by a digest of the
  graph's contents (``spawn_key``), so a graph's answer depends on the seed and the graph
  only, not on the other graphs of the batch: the service merges concurrent requests into
  one call and must answer each request the same way whatever it was merged with.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from threadpoolctl import ThreadpoolController
from torch_geometric.data import Data

from gnnbackdoor.defenses.base import DEFENSES, InputShield, PredictFn, ShieldResult
from gnnbackdoor.settings import Fraction, NonNegativeInt, PositiveFloat, PositiveInt


class Sampler(StrEnum):
    """GraphProt's subgraph samplers (the variants -R, -T, -TF)."""

    RANDOM = "random"
    TOPOLOGY = "topology"
    TOPOLOGY_FEATURE = "topology-feature"


class CovarianceType(StrEnum):
    """Covariances of the feature mixture."""

    DIAG = "diag"
    SPHERICAL = "spherical"


# --------------------------------------------------------------------------- clustering


def dense_adjacency(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Symmetric 0/1 adjacency ``[n, n]`` without self-loops."""
    adj = np.zeros((num_nodes, num_nodes), dtype=np.float64)
    if edge_index.size:
        adj[edge_index[0], edge_index[1]] = 1.0
        adj[edge_index[1], edge_index[0]] = 1.0
        np.fill_diagonal(adj, 0.0)
    return adj


def _minority(labels: np.ndarray) -> np.ndarray:
    """Mask of the strictly smaller of two clusters (all False on a tie or one cluster)."""
    ones = int(labels.sum())
    zeros = labels.size - ones
    if ones == zeros or ones == 0 or zeros == 0:
        return np.zeros(labels.size, dtype=bool)
    return labels == (1 if ones < zeros else 0)


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


@dataclass(frozen=True)
class Clustering:
    """GraphProt's two clusterings, scikit-learn's estimators (the reference).

    Attributes:
        n_init: k-means restarts inside spectral clustering.
        covariance_type: ``diag`` or ``spherical`` covariances of the feature mixture.
        reg_covar: Added to the mixture's variances.
    """

    n_init: int = 10
    covariance_type: str = "diag"
    reg_covar: float = 1e-3

    def spectral(self, adj: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Labels ``[n]`` in ``0..k-1`` of spectral clustering of the ``[n, n]`` symmetric
        0/1 adjacency ``adj`` (``k <= 1``: one cluster; ``k >= n``: one node each). The
        estimator's seed is drawn from ``rng``."""
        n = adj.shape[0]
        if k <= 1 or n == 0:
            return np.zeros(n, dtype=np.int64)
        if k >= n:
            return np.arange(n, dtype=np.int64)
        from sklearn.cluster import SpectralClustering

        # an isolated node gets a tiny affinity to every node (scikit-learn symmetrises it)
        affinity = adj + 1e-12 * (adj.sum(axis=1) == 0)[:, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Graph is not fully connected"
            model = SpectralClustering(
                k, affinity="precomputed", n_init=self.n_init, random_state=_seed_from(rng)
            )
            return model.fit_predict(affinity).astype(np.int64)

    def mixture(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Labels ``[n]`` in ``{0, 1}`` of a two-component Gaussian mixture on the ``[n, F]``
        node features (all 0 when the rows are all equal). The seed is drawn from ``rng``."""
        if len(np.unique(x, axis=0)) < 2:
            return np.zeros(x.shape[0], dtype=np.int64)
        from sklearn.mixture import GaussianMixture

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings on tiny graphs
            model = GaussianMixture(
                2,
                covariance_type=self.covariance_type,
                reg_covar=self.reg_covar,
                random_state=_seed_from(rng),
            )
            return model.fit_predict(x).astype(np.int64)


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """Scanning the loaded libraries costs milliseconds: do it once per process."""
    return ThreadpoolController()


# --------------------------------------------------------------------------- the shield


@dataclass
class _Plan:
    """Per input graph: removed node indices, the subgraphs to query and the input nodes
    each subgraph holds."""

    removed: list[int]
    kept: int
    subgraphs: list[Data]
    nodes: list[list[int]]


@dataclass
class GraphProt(InputShield):
    """GraphProt shield (filter, sample ``num_subgraphs`` subgraphs, majority vote).

    Attributes:
        num_subgraphs: ``N``, subgraphs per graph (paper: 5).
        sample_rate: ``p``, share of the filtered nodes a random subgraph keeps (R; paper 0.2).
        feature_fraction: ``r``, share of feature dimensions a TF subgraph keeps (paper 0.8).
        filter: Run the clustering filter (Eq. 1-2) before sampling.
        filter_min_nodes: Graphs with fewer nodes pass the filter unchanged (>= 3).
        covariance_type: ``diag`` or ``spherical`` covariances of the feature mixture.
        gmm_reg_covar: Added to the mixture's variances (one-hot features need it).
        kmeans_init: k-means restarts inside spectral clustering (``SpectralClustering``'s
            ``n_init``; 3 rather than scikit-learn's 10: the restarts are most of the
            shield's cost).
        random_state: The default seed of :meth:`predict` (the service's, for one).
    """

    sampler: ClassVar[Sampler] = Sampler.TOPOLOGY_FEATURE
    reference = (
        "Yang, Zhou, Lai, Li, Defense-as-a-Service: Black-box Shielding against Backdoored "
        "Graph Models (GraphProt)"
    )

    num_subgraphs: PositiveInt = 5
    sample_rate: Fraction = 0.2
    feature_fraction: Fraction = 0.8
    filter: bool = True
    filter_min_nodes: Annotated[int, Field(ge=3)] = 5
    covariance_type: CovarianceType = CovarianceType.DIAG
    gmm_reg_covar: PositiveFloat = 1e-3
    kmeans_init: PositiveInt = 3
    random_state: NonNegativeInt = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._graphs_seen = 0
        self._nodes_seen = 0
        self._nodes_removed = 0
        self._graphs_filtered = 0

    # -- public API -------------------------------------------------------------------

    def predict(
        self,
        predict_fn: PredictFn,
        graphs: Sequence[Data],
        *,
        seed: int | np.random.Generator | None = None,
    ) -> ShieldResult:
        """Shielded labels of ``graphs`` with one call to ``predict_fn``.

        Args:
            predict_fn: The black box: a list of graphs in, one label each out.
            graphs: Graphs to classify.
            seed: The random source of this call: an int seed (``None``: ``random_state``),
                or a ``numpy.random.Generator`` from which one 128-bit seed is drawn (a
                pipeline's defense stream). Graph ``g`` draws from the child of that seed
                keyed by ``g``'s contents (:meth:`graph_rng`), so the same seed gives the
                same answer for a graph in any batch.

        Raises:
            ValueError: a graph has no nodes or no features, or ``predict_fn`` returns a
                number of labels other than the number of subgraphs sent.
        """
        # Many tiny clustering calls: BLAS threads only add contention; and
        # thousands of small Data objects would trigger full garbage collections over every
        # graph in memory, so the collector waits until the subgraphs are built.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with _blas_controller().limit(limits=1, user_api="blas"):
                root = self.root_seed(seed)
                plans = [self.plan(graph, index, root) for index, graph in enumerate(graphs)]
        finally:
            if gc_was_enabled:
                gc.enable()
        batch = [sub for plan in plans for sub in plan.subgraphs]
        if not batch:
            return ShieldResult(torch.empty(0, dtype=torch.long), [], 0, 0)
        raw = predict_fn(batch)
        sub_labels = torch.as_tensor(raw).view(-1).tolist()
        if len(sub_labels) != len(batch):
            raise ValueError(
                f"predict_fn returned {len(sub_labels)} labels for {len(batch)} subgraphs"
            )
        labels, details, start = [], [], 0
        for plan in plans:
            votes = [int(v) for v in sub_labels[start : start + len(plan.subgraphs)]]
            start += len(plan.subgraphs)
            label, counts = majority_vote(votes)
            labels.append(label)
            details.append(
                {
                    "votes": {str(c): n for c, n in sorted(counts.items())},
                    "removed_nodes": plan.removed,
                    "kept_nodes": plan.kept,
                    "subgraph_nodes": plan.nodes,
                    "subgraph_votes": votes,
                }
            )
        return ShieldResult(
            torch.tensor(labels, dtype=torch.long), details, queries=1, graphs_queried=len(batch)
        )

    def describe(self) -> dict[str, Any]:
        if not self._graphs_seen:
            return {}
        return {
            "filter_removed_node_fraction": self._nodes_removed / max(1, self._nodes_seen),
            "filter_touched_graph_fraction": self._graphs_filtered / self._graphs_seen,
        }

    # -- steps ------------------------------------------------------------------------

    def root_seed(self, seed: int | np.random.Generator | None = None) -> np.random.SeedSequence:
        """The call's root ``SeedSequence``: from ``seed`` (an int, or one 128-bit draw from
        a generator), ``random_state`` when ``None``.

        Raises:
            ValueError: a negative int seed.
        """
        if seed is None:
            seed = self.random_state
        if isinstance(seed, np.random.Generator):
            seed = int.from_bytes(seed.bytes(16), "little")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        return np.random.SeedSequence(seed)

    @staticmethod
    def graph_rng(graph: Data, root: np.random.SeedSequence) -> np.random.Generator:
        """Graph ``graph``'s generator: the child of ``root`` whose spawn key is a 128-bit
        digest of ``x`` (with its shape) and ``edge_index`` — independent of the batch the
        graph arrives in."""
        digest = hashlib.blake2b(digest_size=16)
        x = graph.x
        if x is not None:
            digest.update(np.ascontiguousarray(x.detach().cpu().numpy()).tobytes())
            digest.update(str(tuple(x.shape)).encode())
        digest.update(np.ascontiguousarray(graph.edge_index.cpu().numpy()).tobytes())
        key = tuple(int(w) for w in np.frombuffer(digest.digest(), dtype=np.uint32))
        child = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, *key))
        return np.random.default_rng(child)

    def plan(
        self, graph: Data, index: int = 0, root: np.random.SeedSequence | None = None
    ) -> _Plan:
        """Filter ``graph`` and draw its subgraphs (no model query); ``root``: the call's
        seed (:meth:`root_seed`, by default from ``random_state``)."""
        if graph.x is None or graph.x.dim() != 2:
            raise ValueError(f"graph {index} has no node feature matrix x")
        n = int(graph.x.size(0))
        if n == 0:
            raise ValueError(f"graph {index} has no nodes")
        rng = self.graph_rng(graph, root if root is not None else self.root_seed())
        x32 = graph.x.detach().cpu().float().numpy()
        x = x32.astype(np.float64)
        edge_index = graph.edge_index.detach().cpu().numpy()
        adj = dense_adjacency(edge_index, n)
        removed = self.filter_nodes(adj, x, rng) if self.filter else np.zeros(n, dtype=bool)
        kept = np.flatnonzero(~removed)
        self._graphs_seen += 1
        self._nodes_seen += n
        self._nodes_removed += int(removed.sum())
        self._graphs_filtered += bool(removed.any())
        node_sets, masks = self.sample(adj[np.ix_(kept, kept)], x.shape[1], rng)
        chosen = [kept[nodes] for nodes in node_sets]
        subgraphs = [
            induced_subgraph(x32, edge_index, nodes, mask)
            for nodes, mask in zip(chosen, masks, strict=True)
        ]
        return _Plan(
            np.flatnonzero(removed).tolist(),
            int(kept.size),
            subgraphs,
            [nodes.tolist() for nodes in chosen],
        )

    def filter_nodes(self, adj: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Mask of nodes in the minority cluster of both the topology and the feature
        clustering (Eq. 1-2); all False for graphs below ``filter_min_nodes``."""
        n = adj.shape[0]
        if n < self.filter_min_nodes:
            return np.zeros(n, dtype=bool)
        topo = _minority(self.spectral_labels(adj, 2, rng))
        if not topo.any():
            return topo
        feat = _minority(self.feature_labels(x, rng))
        return topo & feat

    @property
    def clustering(self) -> Clustering:
        """The clustering estimators with this shield's settings."""
        return Clustering(self.kmeans_init, self.covariance_type, self.gmm_reg_covar)

    def spectral_labels(self, adj: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        return self.clustering.spectral(adj, k, rng)

    def feature_labels(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.clustering.mixture(x, rng)

    def sample(
        self, adj: np.ndarray, num_features: int, rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Node positions (into the filtered graph) and feature masks of the ``N``
        subgraphs."""
        n, N = adj.shape[0], self.num_subgraphs
        if self.sampler == "random":  # Eq. 3: floor(p |V'|) nodes, at least one
            size = max(1, math.floor(self.sample_rate * n))
            nodes = [np.sort(rng.permutation(n)[:size]) for _ in range(N)]
            return nodes, [None] * N
        k = max(1, n // N)  # Eq. 5: floor(|V'| / N) clusters
        clusters = self.spectral_labels(adj, k, rng)
        members = [np.flatnonzero(clusters == c) for c in range(int(clusters.max()) + 1)]
        members = [m for m in members if m.size]
        nodes = [np.sort([m[rng.integers(m.size)] for m in members]) for _ in range(N)]
        if self.sampler == "topology":
            return nodes, [None] * N
        keep = math.ceil(self.feature_fraction * num_features)  # Eq. 7: ceil(r d) dims
        masks = []
        for _ in range(N):
            mask = np.zeros(num_features, dtype=bool)
            mask[rng.permutation(num_features)[:keep]] = True
            masks.append(mask)
        return nodes, masks


def induced_subgraph(
    x: np.ndarray, edge_index: np.ndarray, nodes: np.ndarray, feature_mask: np.ndarray | None
) -> Data:
    """The subgraph induced by ``nodes`` (sorted, original indices), relabelled ``0..k-1``;
    feature dimensions outside ``feature_mask`` are zeroed."""
    position = np.full(x.shape[0], -1, dtype=np.int64)
    position[nodes] = np.arange(nodes.size)
    if edge_index.size:
        src, dst = position[edge_index[0]], position[edge_index[1]]
        keep = (src >= 0) & (dst >= 0)
        sub_edges = np.stack([src[keep], dst[keep]])
    else:
        sub_edges = np.empty((2, 0), dtype=np.int64)
    sub_x = x[nodes]
    if feature_mask is not None:
        sub_x = sub_x * feature_mask.astype(sub_x.dtype)
    return Data(x=torch.from_numpy(sub_x), edge_index=torch.from_numpy(sub_edges))


def majority_vote(labels: Sequence[int]) -> tuple[int, dict[int, int]]:
    """``(winner, counts)``: the most frequent label, ties to the smaller label (Eq. 8-9)."""
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if not counts:
        raise ValueError("no votes")
    top = max(counts.values())
    return min(c for c, n in counts.items() if n == top), counts


@DEFENSES.register("graphprot-r")
@dataclass
class GraphProtR(GraphProt):
    """GraphProt with random node sampling (GraphProt-R)."""

    sampler: ClassVar[Sampler] = Sampler.RANDOM


@DEFENSES.register("graphprot-t")
@dataclass
class GraphProtT(GraphProt):
    """GraphProt with topology (spectral-cluster) sampling (GraphProt-T)."""

    sampler: ClassVar[Sampler] = Sampler.TOPOLOGY


@DEFENSES.register("graphprot-tf")
@dataclass
class GraphProtTF(GraphProt):
    """GraphProt with topology sampling plus feature-dimension sampling (GraphProt-TF)."""

    sampler: ClassVar[Sampler] = Sampler.TOPOLOGY_FEATURE


@DEFENSES.register("graphprot")
@dataclass
class GraphProtDefault(GraphProtTF):
    """GraphProt-TF under its short name (Algorithm 1 of the paper)."""
