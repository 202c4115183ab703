"""Non-GNN link victims of Link-Backdoor's Table 5: DeepWalk and node2vec embeddings with an MLP
link classifier on the Hadamard product of the two end nodes' embeddings (Sec. 5.7: "The
embedding-based methods are combined with MLP to complete link prediction result").

Embeddings come from PyG's :class:`~torch_geometric.nn.Node2Vec` (its skip-gram loss with
negative sampling, its walk windows); DeepWalk is node2vec with ``p = q = 1`` (Grover &
Leskovec, 2016, Sec. 3.2). PyG 2.8's ``Node2Vec`` takes its random walks from
``torch.ops.pyg.random_walk`` (pyg-lib >= 0.6) and refuses to start without it; pyg-lib has no
PyPI release, and torch-cluster (the older backend) ships only a source archive on PyPI that
needs a C++ build against torch on every fresh machine (it fails under pip's build isolation
here). The random-walk sampler is therefore :func:`random_walk` below: node2vec's second-order
walk by rejection sampling, the algorithm pyg-lib and torch-cluster implement (KnightKing,
Yang et al., SOSP 2019), vectorised in torch and drawing from a ``torch.Generator`` so runs
repeat for a seed. Libraries with their own walkers (pecanpy, fastnode2vec, graspologic) draw
from numba's or numpy's global generators and train with gensim, not PyG's ``Node2Vec``.

Transductive embeddings, inductive evaluation. An embedding table only knows the graph it was
fitted on, while the pipeline scores other graphs: validation and test graphs, the poisoned
graph and triggered graphs with injected nodes. :class:`EmbeddingLinkPredictor` therefore
embeds a graph it has not seen by continuing skip-gram training from its fitted table, on
walks started at the nodes whose neighbourhood changed, updating only those nodes' rows (see
:meth:`EmbeddingLinkPredictor.encode`). A node keeps its identity (and its fitted row as the
starting point) when it keeps at least one of its fitted neighbours; other nodes, such as
injected trigger nodes, start at the mean of their neighbours' rows. The first graph a fresh
model encodes is the one it is fitted on (the trainer's training graph).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn
from torch_geometric.index import index2ptr
from torch_geometric.nn import Node2Vec
from torch_geometric.utils import sort_edge_index

from gnnbackdoor.errors import ConfigError
from gnnbackdoor.models.base import MODELS, LinkPredictor, ModelSpec
from gnnbackdoor.settings import NonNegativeInt, PositiveFloat, PositiveInt


def random_walk(
    rowptr: Tensor,
    col: Tensor,
    start: Tensor,
    walk_length: int,
    p: float,
    q: float,
    generator: torch.Generator,
) -> Tensor:
    """node2vec random walks ``[B, walk_length + 1]`` from ``start`` ``[B]``.

    The first step is uniform over the neighbours; later steps from ``cur`` (coming from
    ``prev``) propose a uniform neighbour ``x`` and accept it with probability proportional to
    ``1/p`` (``x = prev``), ``1`` (``x`` adjacent to ``prev``) or ``1/q`` (otherwise), divided
    by the largest of the three (rejection sampling, as pyg-lib and torch-cluster do). A node
    without neighbours stays where it is. ``p = q = 1`` gives DeepWalk's uniform walks.

    Args:
        rowptr: CSR row pointers ``[N + 1]`` of the graph, rows sorted.
        col: CSR column indices ``[E]``, sorted within each row.
        start: Start nodes ``[B]``.
        walk_length: Steps per walk.
        p: Return parameter (> 0).
        q: In-out parameter (> 0).
        generator: Source of every draw.
    """
    num_nodes = rowptr.numel() - 1
    degree = rowptr[1:] - rowptr[:-1]
    row = torch.repeat_interleave(torch.arange(num_nodes), degree)
    keys = row * num_nodes + col  # sorted, as rows and the columns within rows are
    biased = not (p == 1 and q == 1)
    weights = torch.tensor([1 / p, 1.0, 1 / q])
    ceiling = float(weights.max())
    walks = [start]
    prev = torch.full_like(start, -1)
    cur = start
    for _ in range(walk_length):
        nxt = cur.clone()
        pending = torch.nonzero(degree[cur] > 0).view(-1)
        while pending.numel():
            node = cur[pending]
            offset = (torch.rand(pending.numel(), generator=generator) * degree[node]).long()
            proposal = col[rowptr[node] + offset]
            if biased:
                back = prev[pending]
                first = back < 0
                key = back.clamp(min=0) * num_nodes + proposal
                found = torch.searchsorted(keys, key).clamp(max=max(keys.numel() - 1, 0))
                adjacent = keys[found] == key if keys.numel() else torch.zeros_like(first)
                kind = torch.where(proposal == back, 0, torch.where(adjacent, 1, 2))
                accept_p = weights[kind] / ceiling
                accept = first | (torch.rand(pending.numel(), generator=generator) < accept_p)
            else:
                accept = torch.ones(pending.numel(), dtype=torch.bool)
            nxt[pending[accept]] = proposal[accept]
            pending = pending[~accept]
        prev, cur = cur, nxt
        walks.append(cur)
    return torch.stack(walks, dim=1)


class WalkNode2Vec(Node2Vec):
    """PyG's :class:`~torch_geometric.nn.Node2Vec` (embedding table, walk windows, skip-gram
    loss) with :func:`random_walk` as its sampler and a ``torch.Generator`` for every draw.

    ``Node2Vec.__init__`` requires pyg-lib (see the module docstring), so this sets up the
    same attributes itself; ``pos_sample`` and ``loss`` are PyG's, ``neg_sample`` is PyG's with
    the generator passed to ``randint``.
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        embedding_dim: int,
        walk_length: int,
        context_size: int,
        walks_per_node: int,
        p: float,
        q: float,
        num_negative_samples: int,
        generator: torch.Generator,
    ) -> None:
        nn.Module.__init__(self)
        self.generator = generator
        self.num_nodes = num_nodes
        row, col = sort_edge_index(edge_index, num_nodes=num_nodes)
        self.rowptr, self.col = index2ptr(row, num_nodes), col
        self.EPS = 1e-15
        assert walk_length >= context_size
        self.embedding_dim = embedding_dim
        self.walk_length = walk_length - 1
        self.context_size = context_size
        self.walks_per_node = walks_per_node
        self.p = p
        self.q = q
        self.num_negative_samples = num_negative_samples
        self.embedding = nn.Embedding(num_nodes, embedding_dim)

        def sampler(rowptr, col, batch, length, p, q):
            return random_walk(rowptr, col, batch, length, p, q, self.generator)

        self.random_walk_fn = sampler

    def neg_sample(self, batch: Tensor) -> Tensor:
        batch = batch.repeat(self.walks_per_node * self.num_negative_samples)
        rw = torch.randint(
            self.num_nodes, (batch.size(0), self.walk_length), generator=self.generator
        )
        rw = torch.cat([batch.view(-1, 1), rw], dim=-1)
        windows = 1 + self.walk_length + 1 - self.context_size
        return torch.cat([rw[:, j : j + self.context_size] for j in range(windows)], dim=0)


def _neighbour_sets(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Sorted unique order-free keys of ``edge_index`` and node degrees."""
    keys = torch.unique(edge_index[0] * num_nodes + edge_index[1])
    degree = torch.bincount(edge_index[0], minlength=num_nodes)
    return keys, degree


class EmbeddingLinkPredictor(LinkPredictor):
    """DeepWalk / node2vec embeddings (fitted, not trained by the link trainer) and an MLP on
    ``z_u ⊙ z_v`` (trained by the link trainer with binary cross-entropy).

    Buffers ``embedding`` ``[N_fit, d]`` and ``fitted_edges`` ``[2, E_fit]`` hold the fitted
    table and its graph, so ``state_dict`` carries them (a black-box target starting from the
    victim's pre-trained model starts from its embeddings too).
    """

    def __init__(self, spec: NodeEmbeddingSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.embedding_dim
        self.mlp = nn.Sequential(
            nn.Linear(d, spec.mlp_hidden), nn.ReLU(), nn.Linear(spec.mlp_hidden, 1)
        )
        self.register_buffer("embedding", torch.zeros(0, d))
        self.register_buffer("fitted_edges", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("seed", torch.randint(0, 2**62, (1,)))  # torch's global stream
        self._cache: dict[str, Tensor] = {}

    @property
    def fitted(self) -> bool:
        return self.embedding.size(0) > 0

    # -- embeddings ---------------------------------------------------------------------

    @staticmethod
    def _key(edge_index: Tensor, num_nodes: int) -> str:
        digest = hashlib.sha1(edge_index.contiguous().numpy().tobytes())
        digest.update(str(num_nodes).encode())
        return digest.hexdigest()

    def _generator(self, key: str) -> torch.Generator:
        mixed = int(hashlib.sha1(f"{int(self.seed)}:{key}".encode()).hexdigest()[:15], 16)
        return torch.Generator().manual_seed(mixed)

    def _walker(self, edge_index: Tensor, num_nodes: int, key: str) -> WalkNode2Vec:
        s = self.spec
        return WalkNode2Vec(
            edge_index,
            num_nodes,
            s.embedding_dim,
            s.walk_length,
            s.context_size,
            s.walks_per_node,
            s.p,
            s.q,
            s.num_negative_samples,
            self._generator(key),
        )

    def _skipgram(self, walker: WalkNode2Vec, starts: Tensor, epochs: int, rows: Tensor | None):
        """``epochs`` passes of skip-gram over walks from ``starts`` (shuffled with the walker's
        generator); only ``rows`` (bool ``[N]``, ``None``: all) of the table move."""
        weight = walker.embedding.weight
        if rows is not None:
            mask = rows.to(weight.dtype).unsqueeze(1)
            weight.register_hook(lambda grad: grad * mask)
        optimiser = torch.optim.Adam([weight], lr=self.spec.embedding_lr)
        batch = self.spec.walk_batch_size
        with torch.enable_grad():
            for _ in range(epochs):
                order = starts[torch.randperm(starts.numel(), generator=walker.generator)]
                for i in range(0, order.numel(), batch):
                    chunk = order[i : i + batch]
                    optimiser.zero_grad()
                    loss = walker.loss(walker.pos_sample(chunk), walker.neg_sample(chunk))
                    loss.backward()
                    optimiser.step()

    def _fit(self, edge_index: Tensor, num_nodes: int, key: str) -> Tensor:
        walker = self._walker(edge_index, num_nodes, key)
        seed = int(torch.randint(0, 2**62, (1,), generator=walker.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # nn.Embedding's N(0, 1) draws, from this fit's stream
            walker.embedding.reset_parameters()
        self._skipgram(walker, torch.arange(num_nodes), self.spec.epochs, None)
        return walker.embedding.weight.detach().clone()

    def _refresh(self, edge_index: Tensor, num_nodes: int, key: str) -> Tensor:
        """Embeddings of a graph other than the fitted one (see the module docstring)."""
        n_fit = self.embedding.size(0)
        new_keys, new_degree = _neighbour_sets(edge_index, num_nodes)
        old_keys, old_degree = _neighbour_sets(self.fitted_edges, n_fit)
        # edges present in one graph only, mapped onto the new graph's node ids
        old_in_new = old_keys[(old_keys // n_fit < num_nodes) & (old_keys % n_fit < num_nodes)]
        old_in_new = (old_in_new // n_fit) * num_nodes + old_in_new % n_fit
        changed_keys = torch.cat(
            [
                new_keys[~torch.isin(new_keys, old_in_new)],
                old_in_new[~torch.isin(old_in_new, new_keys)],
            ]
        )
        touched = torch.zeros(num_nodes, dtype=torch.bool)
        touched[changed_keys // num_nodes] = True
        touched[changed_keys % num_nodes] = True
        known = torch.zeros(num_nodes, dtype=torch.bool)
        known[: min(n_fit, num_nodes)] = True
        # identity: a fitted node keeping one fitted neighbour (or isolated in both graphs)
        kept_edges = new_keys[torch.isin(new_keys, old_in_new)]
        keeps_neighbour = torch.zeros(num_nodes, dtype=torch.bool)
        keeps_neighbour[kept_edges // num_nodes] = True
        both_isolated = torch.zeros(num_nodes, dtype=torch.bool)
        shared = min(n_fit, num_nodes)
        both_isolated[:shared] = (new_degree[:shared] == 0) & (old_degree[:shared] == 0)
        same = known & (keeps_neighbour | both_isolated)
        touched |= ~same
        table = torch.zeros(num_nodes, self.embedding.size(1))
        table[:shared][same[:shared]] = self.embedding[:shared][same[:shared]]
        fresh = ~same
        if bool(fresh.any()):
            # fresh nodes start at the mean of their identified neighbours' rows (else 0)
            src, dst = edge_index
            use = fresh[src] & same[dst]
            sums = torch.zeros_like(table).index_add_(0, src[use], table[dst[use]])
            counts = torch.bincount(src[use], minlength=num_nodes).clamp(min=1).unsqueeze(1)
            table[fresh] = (sums / counts)[fresh]
        if not bool(touched.any()):
            return table
        walker = self._walker(edge_index, num_nodes, key)
        with torch.no_grad():
            walker.embedding.weight.copy_(table)
        starts = torch.nonzero(touched).view(-1)
        self._skipgram(walker, starts, self.spec.refresh_epochs, touched)
        return walker.embedding.weight.detach().clone()

    def encode(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Node embeddings ``[N, d]`` of the graph ``(x, edge_index)``; ``x`` only gives ``N``
        (random-walk embeddings ignore features) and ``edge_weight`` is ignored (the walks are
        unweighted), so no gradient reaches the graph.

        The first graph a fresh model sees is fitted from scratch (``epochs`` passes of walks
        from every node); the fitted graph returns the fitted table; any other graph is
        embedded by :meth:`_refresh` (``refresh_epochs`` passes of walks from the nodes whose
        neighbourhood changed, only their rows moving). Results are cached per graph.
        """
        num_nodes = int(x.size(0))
        key = self._key(edge_index, num_nodes)
        if key in self._cache:
            return self._cache[key]
        if not self.fitted:
            table = self._fit(edge_index, num_nodes, key)
            self.embedding = table
            self.fitted_edges = edge_index.clone()
        elif num_nodes == self.embedding.size(0) and torch.equal(edge_index, self.fitted_edges):
            table = self.embedding
        else:
            table = self._refresh(edge_index, num_nodes, key)
        self._cache[key] = table
        return table

    def score(self, z: Tensor, pairs: Tensor) -> Tensor:
        """Link logits ``[P]``: the MLP on ``z_u ⊙ z_v`` (Hadamard product)."""
        return self.mlp(z[pairs[0]] * z[pairs[1]]).squeeze(-1)

    def training_loss(self, x, edge_index, pos_pairs, neg_pairs, edge_weight=None):
        z = self.encode(x, edge_index)
        logits = torch.cat([self.score(z, pos_pairs), self.score(z, neg_pairs)])
        labels = torch.cat([torch.ones(pos_pairs.size(1)), torch.zeros(neg_pairs.size(1))])
        return nn.functional.binary_cross_entropy_with_logits(logits, labels), z

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        """Accepts a fitted table of any size (buffers are resized first); clears the per-graph
        cache when the table changes."""
        for name in ("embedding", "fitted_edges"):
            if name in state_dict and state_dict[name].shape != getattr(self, name).shape:
                setattr(self, name, state_dict[name].clone())
        if "embedding" in state_dict and not torch.equal(state_dict["embedding"], self.embedding):
            self._cache.clear()
        if "fitted_edges" in state_dict and not torch.equal(
            state_dict["fitted_edges"], self.fitted_edges
        ):
            self._cache.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


@dataclass
class NodeEmbeddingSpec(ModelSpec):
    """Random-walk embeddings + an MLP link classifier (Link-Backdoor Table 5's victims).

    Attributes:
        embedding_dim: ``d`` (DeepWalk and node2vec papers: 128).
        walk_length: Nodes per walk (PyG's example: 20).
        context_size: Skip-gram window (PyG's example: 10).
        walks_per_node: Walks from each start node per pass (both papers: 10).
        num_negative_samples: Negative windows per positive one.
        epochs: Passes over all nodes when fitting a graph.
        refresh_epochs: Passes over the changed nodes when embedding another graph.
        embedding_lr: Adam learning rate of the skip-gram fit.
        walk_batch_size: Start nodes per skip-gram step (PyG's example: 128, with 100 epochs).
            Measured on Cora (seed 0, one epoch, 85/5/10 split): batches of 128 at lr 0.01
            reach a test AUC of 0.59, batches of 16 at lr 0.05 reach 0.83 for the same walks
            (the paper's benign AUC: 87.48), hence these defaults.
        mlp_hidden: Hidden width of the MLP on ``z_u ⊙ z_v``.
        p: node2vec's return parameter.
        q: node2vec's in-out parameter.
    """

    embedding_dim: PositiveInt = 128
    walk_length: Annotated[int, Field(ge=2)] = 20
    context_size: Annotated[int, Field(ge=2)] = 10
    walks_per_node: PositiveInt = 10
    num_negative_samples: PositiveInt = 1
    epochs: PositiveInt = 2
    refresh_epochs: NonNegativeInt = 2
    embedding_lr: PositiveFloat = 0.05
    walk_batch_size: PositiveInt = 16
    mlp_hidden: PositiveInt = 64
    p: PositiveFloat = 1.0
    q: PositiveFloat = 1.0
    task: ClassVar[str] = "link"
    graph_differentiable: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.walk_length < self.context_size:
            raise ConfigError(
                f"{self.registered_name}: walk_length ({self.walk_length}) must be >= "
                f"context_size ({self.context_size})"
            )

    def build(self, in_channels: int, out_channels: int | None = None) -> LinkPredictor:
        return EmbeddingLinkPredictor(self)


@MODELS.register("deepwalk")
@dataclass
class DeepWalkSpec(NodeEmbeddingSpec):
    """DeepWalk (uniform walks, node2vec with p = q = 1) + MLP on the Hadamard product."""

    reference: ClassVar[str] = (
        "Perozzi et al., DeepWalk, KDD 2014 (PyG Node2Vec, p = q = 1); victim of Link-Backdoor "
        "Table 5"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.p != 1 or self.q != 1:
            raise ConfigError(f"{self.registered_name}: DeepWalk has p = q = 1; use node2vec")


@MODELS.register("node2vec")
@dataclass
class Node2VecSpec(NodeEmbeddingSpec):
    """node2vec (biased second-order walks) + MLP on the Hadamard product.

    ``p`` and ``q`` are not given by Link-Backdoor; the defaults ``p = 1, q = 0.5`` (walks
    leaning outward, DFS-like) are one of node2vec's grid values, {0.25, 0.5, 1, 2, 4}.
    """

    p: PositiveFloat = 1.0
    q: PositiveFloat = 0.5
    reference: ClassVar[str] = (
        "Grover & Leskovec, node2vec, KDD 2016 (PyG Node2Vec); victim of Link-Backdoor Table 5"
    )
