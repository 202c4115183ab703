"""Train/validation/test splits for both tasks, deterministic given their random source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch_geometric.transforms as T
from sklearn.model_selection import StratifiedKFold, train_test_split
from torch_geometric.data import Data

from gnnbackdoor.errors import ConfigError


@dataclass
class LinkSplit:
    """Edges of one graph split for link prediction.

    Attributes:
        train: Message-passing graph: ``x``, ``edge_index`` (training edges, both directions)
            and ``pos_edge_label_index`` (``[2, E_train]``, each training edge once).
        val: ``x``, ``edge_index`` (= training edges), ``pos_edge_label_index`` and
            ``neg_edge_label_index`` (``[2, E_val]`` each).
        test: As ``val``, for the test edges.
    """

    train: Data
    val: Data
    test: Data

    @property
    def num_nodes(self) -> int:
        return int(self.train.num_nodes)


def split_links(
    graph: Data,
    *,
    val: float = 0.05,
    test: float = 0.10,
    rng: np.random.Generator | None = None,
) -> LinkSplit:
    """Split the undirected edges of ``graph`` 85/5/10 (by default) with PyG's
    ``RandomLinkSplit``; validation and test get as many sampled non-edges as edges.

    ``RandomLinkSplit`` takes no generator: it permutes edges with torch's global generator
    and samples non-edges with Python's ``random``. Run it under a seeded stage
    (``RunStreams(seed).running(Stage.DATA_SPLIT)``, as the link pipeline does) for a
    reproducible split; this function seeds nothing itself.

    Negatives are distinct unordered pairs ``u != v`` that are no edge of ``graph``, and the
    validation and test negatives are disjoint (PyG's draw is kept where it meets that; pairs
    it repeats, reverses or lacks are drawn anew, see :func:`_repair_negatives`).

    Args:
        graph: ``x`` ``[N, F]`` and undirected ``edge_index``.
        val: Fraction of edges for validation.
        test: Fraction of edges for testing.
        rng: Draws the negatives that replace PyG's invalid ones (the pipeline hands the
            data-split stage's generator); ``None``: a fixed generator (seed 0).

    Raises:
        ConfigError: a fraction outside (0, 1), or one that gives no edge of the graph's
            count (``--set data.link_val=0.0001`` on 1,000 edges), or too few non-edges.
    """
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(
            f"link split fractions val={val}, test={test} must be in (0, 1) and sum to less than 1"
        )
    num_edges = int((graph.edge_index[0] <= graph.edge_index[1]).sum())  # as RandomLinkSplit
    for name, fraction in (("data.link_val", val), ("data.link_test", test)):
        if int(fraction * num_edges) == 0:
            raise ConfigError(
                f"{name}={fraction} gives 0 of the graph's {num_edges} undirected edges; "
                f"use at least {1 / max(num_edges, 1):.2g}"
            )
    if num_edges - int(val * num_edges) - int(test * num_edges) < 1:
        raise ConfigError(f"link_val + link_test leave no training edge of {num_edges}")
    transform = T.RandomLinkSplit(
        num_val=val,
        num_test=test,
        is_undirected=True,
        split_labels=True,
        add_negative_train_samples=False,
    )
    data = Data(x=graph.x, edge_index=graph.edge_index, num_nodes=graph.num_nodes)
    train, valid, tst = transform(data)
    _repair_negatives(graph, valid, tst, np.random.default_rng(0) if rng is None else rng)
    return LinkSplit(train=train, val=valid, test=tst)


def _repair_negatives(graph: Data, val: Data, test: Data, rng: np.random.Generator) -> None:
    """Make ``neg_edge_label_index`` of ``val`` and ``test`` distinct unordered non-edges,
    disjoint between the two, as many as each part's positives (in place).

    PyG's sampler draws ordered pairs, so a pair and its reverse could both be drawn, and it
    may return fewer than asked. Its pairs are kept in order where valid (so splits it drew
    well are unchanged); the rest are drawn uniformly from the remaining unordered non-edges
    with ``rng``. Hand-written: no PyG or scikit-learn routine samples unordered non-edges
    disjoint from a given set.
    """
    n = int(graph.num_nodes)
    edges = graph.edge_index
    taken = set((torch.minimum(edges[0], edges[1]) * n + torch.maximum(*edges)).tolist())
    parts = [(val, val.pos_edge_label_index.size(1)), (test, test.pos_edge_label_index.size(1))]
    available = n * (n - 1) // 2 - len({k for k in taken if k // n != k % n})
    if sum(c for _, c in parts) > available:
        raise ConfigError(
            f"the graph has {available} non-edges, fewer than the {sum(c for _, c in parts)} "
            "validation and test negatives; lower data.link_val or data.link_test"
        )
    for part, wanted in parts:
        drawn = getattr(part, "neg_edge_label_index", torch.empty(2, 0, dtype=torch.long))
        keep: list[int] = []
        for u, v in drawn.t().tolist():
            key = min(u, v) * n + max(u, v)
            if u != v and key not in taken and len(keep) < wanted:
                keep.append(key)
                taken.add(key)
        while len(keep) < wanted:
            u, v = rng.integers(0, n, size=2).tolist()
            key = min(u, v) * n + max(u, v)
            if u != v and key not in taken:
                keep.append(key)
                taken.add(key)
        keys = torch.tensor(keep, dtype=torch.long)
        if keys.numel() == drawn.size(1) and torch.equal(
            keys, torch.minimum(drawn[0], drawn[1]) * n + torch.maximum(drawn[0], drawn[1])
        ):
            continue  # PyG's draw was valid: keep its pairs (and their orientation)
        part.neg_edge_label_index = torch.stack([keys // n, keys % n])
        part.neg_edge_label = torch.zeros(keys.numel())


def _strata(labels: np.ndarray, first: int, second: int) -> np.ndarray | None:
    """Stratification labels for a draw of ``first`` and ``second`` items: the class labels,
    with classes of fewer than 2 items pooled into one stratum (joined to the largest class
    when it holds a single item), or ``None`` (unstratified) when a side would get fewer
    items than there are strata. Classes of at least 2 items everywhere: ``labels`` itself.
    """
    counts = np.bincount(labels)
    small = counts[labels] < 2
    if not small.any():
        strata = labels
    else:
        strata = labels.copy()
        strata[small] = -1 if small.sum() >= 2 else int(counts.argmax())
    if len(np.unique(strata)) > min(first, second):
        return None
    return strata


@dataclass
class GraphSplit:
    """A stratified split of a graph-classification dataset.

    Attributes:
        train, val, test: The graphs of each part (the same objects as in the dataset).
        train_index, val_index, test_index: Their positions in the dataset.
        num_classes: Number of classes in the whole dataset.
        num_features: Node feature width.
    """

    train: list[Data]
    val: list[Data]
    test: list[Data]
    train_index: list[int]
    val_index: list[int]
    test_index: list[int]
    num_classes: int
    num_features: int


def split_graphs(
    graphs: list[Data],
    seed: int,
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
    cv_folds: int = 0,
    cv_fold: int = 0,
) -> GraphSplit:
    """Stratified split: ``train_fraction`` of the graphs for training (of which
    ``val_fraction`` is held out for early stopping), the rest for testing.

    The papers use ``train_fraction`` 0.8 (GCleaner) and 2/3 (GraphProt). With ``cv_folds``
    ``k >= 2`` the test split is instead fold ``cv_fold`` of scikit-learn's
    ``StratifiedKFold(k, shuffle=True, random_state=seed)`` and ``train_fraction`` is unused
    (the k-fold protocol of Xu et al. 2019 and Errica et al. 2020).

    Tiny classes: each draw stratifies by class; classes with fewer than 2 graphs among
    those being split are pooled into one stratum (drawn unstratified), and when even that
    cannot be stratified (fewer graphs on a side than strata) the draw is unstratified.

    Raises:
        ConfigError: a fraction outside its range, one that leaves a part with 0 graphs
            (the message names the count), or ``cv_fold`` not in ``0..cv_folds-1``.
    """
    if not 0 < train_fraction < 1:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.array([int(g.y.view(-1)[0]) for g in graphs])
    index = np.arange(len(graphs))
    if cv_folds:
        if cv_folds < 2 or not 0 <= cv_fold < cv_folds:
            raise ConfigError(f"cv_fold must be in 0..{cv_folds - 1} with cv_folds >= 2")
        folds = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed % 2**32)
        train_all, test_index = list(folds.split(index, labels))[cv_fold]
    else:
        num_train = int(np.floor(train_fraction * len(graphs)))  # scikit-learn's rounding
        if num_train == 0 or num_train == len(graphs):
            raise ConfigError(
                f"data.train_fraction={train_fraction} gives {num_train} training and "
                f"{len(graphs) - num_train} test graphs of {len(graphs)}; both need at least 1"
            )
        train_all, test_index = train_test_split(
            index,
            train_size=train_fraction,
            random_state=seed,
            stratify=_strata(labels, num_train, len(graphs) - num_train),
        )
    if val_fraction > 0:
        num_val = int(np.ceil(val_fraction * len(train_all)))
        if num_val >= len(train_all):
            raise ConfigError(
                f"data.val_fraction={val_fraction} takes {num_val} of the {len(train_all)} "
                "training graphs, leaving none to train on"
            )
        train_index, val_index = train_test_split(
            train_all,
            test_size=val_fraction,
            random_state=seed,
            stratify=_strata(labels[train_all], len(train_all) - num_val, num_val),
        )
    else:
        train_index, val_index = train_all, np.array([], dtype=int)
    pick = lambda idx: [graphs[i] for i in sorted(idx.tolist())]  # noqa: E731
    return GraphSplit(
        train=pick(train_index),
        val=pick(val_index),
        test=pick(test_index),
        train_index=sorted(train_index.tolist()),
        val_index=sorted(val_index.tolist()),
        test_index=sorted(test_index.tolist()),
        num_classes=int(labels.max()) + 1,
        num_features=int(graphs[0].x.size(1)),
    )
