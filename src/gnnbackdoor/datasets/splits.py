"""Train/validation/test splits for both tasks, seeded and deterministic."""

from __future__ import annotations

import random
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


def split_links(graph: Data, seed: int, val: float = 0.05, test: float = 0.10) -> LinkSplit:
    """Split the undirected edges of ``graph`` 85/5/10 (by default) with PyG's
    ``RandomLinkSplit``; validation and test get as many sampled non-edges as edges.

    Args:
        graph: ``x`` ``[N, F]`` and undirected ``edge_index``.
        seed: Seeds the edge permutation and the negative sampling.
        val: Fraction of edges for validation.
        test: Fraction of edges for testing.
    """
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(
            f"link split fractions val={val}, test={test} must be in (0, 1) and sum to less than 1"
        )
    transform = T.RandomLinkSplit(
        num_val=val,
        num_test=test,
        is_undirected=True,
        split_labels=True,
        add_negative_train_samples=False,
    )
    data = Data(x=graph.x, edge_index=graph.edge_index, num_nodes=graph.num_nodes)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        # PyG's negative sampler draws from Python's and NumPy's generators as well as torch's
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        train, valid, tst = transform(data)
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    return LinkSplit(train=train, val=valid, test=tst)


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

    Raises:
        ConfigError: a fraction out of range, or ``cv_fold`` not in ``0..cv_folds-1``.
    """
    if not 0 < train_fraction < 1:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.array([int(g.y.view(-1)[0]) for g in graphs])
    index = np.arange(len(graphs))
    stratify = labels if np.bincount(labels).min() >= 2 else None
    if cv_folds:
        if cv_folds < 2 or not 0 <= cv_fold < cv_folds:
            raise ConfigError(f"cv_fold must be in 0..{cv_folds - 1} with cv_folds >= 2")
        folds = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed % 2**32)
        train_all, test_index = list(folds.split(index, labels))[cv_fold]
    else:
        train_all, test_index = train_test_split(
            index, train_size=train_fraction, random_state=seed, stratify=stratify
        )
    if val_fraction > 0:
        strat_train = labels[train_all] if stratify is not None else None
        train_index, val_index = train_test_split(
            train_all, test_size=val_fraction, random_state=seed, stratify=strat_train
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
