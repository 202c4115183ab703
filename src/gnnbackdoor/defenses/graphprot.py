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
* Spectral clustering follows scikit-learn's ``SpectralClustering(affinity="precomputed")``:
  the eigenvectors of the ``k`` smallest eigenvalues of the symmetric normalised Laplacian,
  scaled by ``D^-1/2``, clustered by k-means. Disconnected graphs are fine (each component
  has its own zero eigenvalue); isolated nodes get degree 1 in the normalisation.
* The mixture uses diagonal covariances with ``gmm_reg_covar`` added (one-hot features make
  full covariances singular); ``covariance_type="spherical"`` is the other robust choice.
* ``backend="numpy"`` (default) is a hand-written, vectorised version of those two
  scikit-learn estimators (``numpy.linalg.eigh`` + k-means++/Lloyd, and EM for the mixture):
  scikit-learn's per-call overhead (input validation, ``n_init=10``, thread pools) is several
  milliseconds per small graph, too slow for hundreds of graphs per second.
  ``backend="sklearn"`` calls ``SpectralClustering`` and ``GaussianMixture`` themselves.
* Randomness: each graph draws from its own generator seeded by ``random_state`` and a hash
  of the graph's contents, so a graph's answer does not depend on the other graphs of the
  batch, and runs are deterministic.
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


class ClusteringBackend(StrEnum):
    """Who fits the filter's and the topology sampler's clusterings."""

    NUMPY = "numpy"  # hand-written, fast
    SKLEARN = "sklearn"  # scikit-learn's reference estimators


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


def spectral_embedding(adj: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` eigenvectors of the smallest eigenvalues of the normalised Laplacian
    ``I - D^-1/2 A D^-1/2``, scaled by ``D^-1/2`` (scikit-learn's ``spectral_embedding``
    with ``norm_laplacian=True, drop_first=False``)."""
    deg = adj.sum(axis=1)
    inv_sqrt = 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0))
    laplacian = -(inv_sqrt[:, None] * adj * inv_sqrt[None, :])
    np.fill_diagonal(laplacian, 1.0)
    _, vectors = np.linalg.eigh(laplacian)
    return vectors[:, :k] * inv_sqrt[:, None]


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 3) -> np.ndarray:
    """Cluster labels ``[n]`` in ``0..k-1`` by k-means++ seeding and Lloyd iterations; the best
    of ``n_init`` starts by inertia. ``k >= n`` puts each point in its own cluster."""
    n = points.shape[0]
    if k <= 1 or n == 0:
        return np.zeros(n, dtype=np.int64)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    spread = points.max(axis=0) - points.min(axis=0)
    points = points[:, spread > 1e-12 * max(1.0, float(spread.max(initial=0.0)))]
    if points.shape[1] == 0:  # all points equal
        return np.zeros(n, dtype=np.int64)
    if k == 2 and points.shape[1] == 1:
        return _two_means_1d(points[:, 0])
    best_labels, best_inertia = None, math.inf
    sq_norms = (points * points).sum(axis=1)
    for _ in range(n_init):
        centres = np.empty((k, points.shape[1]))
        centres[0] = points[rng.integers(n)]
        closest = ((points - centres[0]) ** 2).sum(axis=1)
        for c in range(1, k):
            total = closest.sum()
            if total <= 0:  # fewer distinct points than clusters
                centres[c:] = centres[0]
                break
            pick = int(np.searchsorted(np.cumsum(closest), rng.random() * total))
            centres[c] = points[min(pick, n - 1)]
            closest = np.minimum(closest, ((points - centres[c]) ** 2).sum(axis=1))
        labels = np.full(n, -1)
        clusters = np.arange(k)
        for _ in range(100):
            dist = sq_norms[:, None] - 2.0 * points @ centres.T + (centres * centres).sum(axis=1)
            new = dist.argmin(axis=1)
            if (new == labels).all():
                break
            labels = new
            onehot = (labels[:, None] == clusters).astype(points.dtype)
            counts = onehot.sum(axis=0)
            filled = counts > 0
            centres[filled] = (onehot.T @ points)[filled] / counts[filled, None]
        inertia = float(dist[np.arange(n), labels].sum())
        if inertia < best_inertia - 1e-12:
            best_labels, best_inertia = labels, inertia
    return best_labels  # type: ignore[return-value]


def _two_means_1d(values: np.ndarray) -> np.ndarray:
    """Optimal 2-means of 1-D values (sort, then the split of least within-cluster sum of
    squares); constant columns of a spectral embedding leave this case for k = 2."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    n = v.size
    csum, csq = np.cumsum(v), np.cumsum(v * v)
    left_n = np.arange(1, n)
    left = csq[:-1] - csum[:-1] ** 2 / left_n
    right_sum, right_sq = csum[-1] - csum[:-1], csq[-1] - csq[:-1]
    right = right_sq - right_sum**2 / (n - left_n)
    cost = left + right
    cost[v[1:] - v[:-1] <= 0] = np.inf  # never split equal values
    split = int(np.argmin(cost)) + 1
    labels = np.zeros(n, dtype=np.int64)
    labels[order[split:]] = 1
    return labels


def gaussian_mixture_2(
    x: np.ndarray,
    rng: np.random.Generator,
    covariance_type: str = "diag",
    reg_covar: float = 1e-3,
    max_iter: int = 50,
    tol: float = 1e-3,
) -> np.ndarray:
    """Labels ``[n]`` of a two-component Gaussian mixture fitted by EM from a k-means start
    (scikit-learn's ``GaussianMixture(2, init_params="kmeans")`` for diagonal or spherical
    covariances)."""
    n, d = x.shape
    labels = kmeans(x, 2, rng, n_init=1)
    if labels.max(initial=0) == 0:
        return labels
    resp = np.zeros((n, 2))
    resp[np.arange(n), labels] = 1.0
    x_sq = x * x
    const = d * math.log(2 * math.pi)
    lower = -math.inf
    for _ in range(max_iter):
        # M-step (sklearn's _estimate_gaussian_covariances_diag / _spherical)
        nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
        means = resp.T @ x / nk[:, None]
        var = resp.T @ x_sq / nk[:, None] - means**2 + reg_covar  # [2, d]
        if covariance_type == "spherical":
            var = np.repeat(var.mean(axis=1, keepdims=True), d, axis=1)
        var = np.maximum(var, reg_covar)
        precision = 1.0 / var
        # E-step: log N(x | mean, var) + log weight, as matrix products
        sq = x_sq @ precision.T - 2.0 * x @ (means * precision).T
        sq += (means * means * precision).sum(axis=1)
        log_prob = np.log(nk / n) - 0.5 * (const + np.log(var).sum(axis=1) + sq)
        log_norm = np.logaddexp(log_prob[:, 0], log_prob[:, 1])
        resp = np.exp(log_prob - log_norm[:, None])
        bound = float(log_norm.mean())
        if abs(bound - lower) < tol:
            break
        lower = bound
    return resp.argmax(axis=1)


def _minority(labels: np.ndarray) -> np.ndarray:
    """Mask of the strictly smaller of two clusters (all False on a tie or one cluster)."""
    ones = int(labels.sum())
    zeros = labels.size - ones
    if ones == zeros or ones == 0 or zeros == 0:
        return np.zeros(labels.size, dtype=bool)
    return labels == (1 if ones < zeros else 0)


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _sklearn_spectral(adj: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.cluster import SpectralClustering

    if k <= 1:
        return np.zeros(adj.shape[0], dtype=np.int64)
    if k >= adj.shape[0]:
        return np.arange(adj.shape[0], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Graph is not fully connected"
        model = SpectralClustering(k, affinity="precomputed", random_state=_seed_from(rng))
        return model.fit_predict(adj + 1e-12 * (adj.sum(axis=1) == 0)[:, None]).astype(np.int64)


def _sklearn_mixture(
    x: np.ndarray, rng: np.random.Generator, covariance_type: str, reg_covar: float
) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    if len(np.unique(x, axis=0)) < 2:
        return np.zeros(x.shape[0], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on tiny graphs
        model = GaussianMixture(
            2,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
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
        kmeans_init: k-means restarts inside spectral clustering (numpy backend).
        backend: ``numpy`` (hand-written, fast) or ``sklearn`` (reference estimators).
        random_state: Seed; each graph also mixes in a hash of its contents.
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
    backend: ClusteringBackend = ClusteringBackend.NUMPY
    random_state: NonNegativeInt = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._graphs_seen = 0
        self._nodes_seen = 0
        self._nodes_removed = 0
        self._graphs_filtered = 0

    # -- public API -------------------------------------------------------------------

    def predict(self, predict_fn: PredictFn, graphs: Sequence[Data]) -> ShieldResult:
        """Shielded labels of ``graphs`` with one call to ``predict_fn``.

        Raises:
            ValueError: a graph has no nodes or no features, or ``predict_fn`` returns a
                number of labels other than the number of subgraphs sent.
        """
        # Many tiny eigh/matmul calls: BLAS threads only add contention (10-50x slower); and
        # thousands of small Data objects would trigger full garbage collections over every
        # graph in memory, so the collector waits until the subgraphs are built.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with _blas_controller().limit(limits=1, user_api="blas"):
                plans = [self.plan(graph, index) for index, graph in enumerate(graphs)]
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

    def rng_for(self, graph: Data) -> np.random.Generator:
        """The graph's own generator: ``random_state`` and a hash of ``x`` and ``edge_index``."""
        digest = hashlib.blake2b(digest_size=16)
        x = graph.x
        if x is not None:
            digest.update(np.ascontiguousarray(x.detach().cpu().numpy()).tobytes())
            digest.update(str(tuple(x.shape)).encode())
        digest.update(np.ascontiguousarray(graph.edge_index.cpu().numpy()).tobytes())
        digest.update(self.random_state.to_bytes(8, "little"))
        key = np.frombuffer(digest.digest(), dtype=np.uint64)
        return np.random.Generator(np.random.Philox(key=key))

    def plan(self, graph: Data, index: int = 0) -> _Plan:
        """Filter ``graph`` and draw its subgraphs (no model query)."""
        if graph.x is None or graph.x.dim() != 2:
            raise ValueError(f"graph {index} has no node feature matrix x")
        n = int(graph.x.size(0))
        if n == 0:
            raise ValueError(f"graph {index} has no nodes")
        rng = self.rng_for(graph)
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

    def spectral_labels(self, adj: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        if self.backend == "sklearn":
            return _sklearn_spectral(adj, k, rng)
        if k <= 1:
            return np.zeros(adj.shape[0], dtype=np.int64)
        return kmeans(spectral_embedding(adj, k), k, rng, self.kmeans_init)

    def feature_labels(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.backend == "sklearn":
            return _sklearn_mixture(x, rng, self.covariance_type, self.gmm_reg_covar)
        return gaussian_mixture_2(x, rng, self.covariance_type, self.gmm_reg_covar)

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
