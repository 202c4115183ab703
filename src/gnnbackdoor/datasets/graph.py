"""Graph-classification datasets: TUDataset collections, Bitcoin in TU layout, and a generated
motif dataset that needs no files.

Each loader returns ``list[Data]`` with ``x`` (float, ``[num_nodes, num_features]``),
``edge_index`` (undirected, both directions stored) and ``y`` (long, ``[1]``). Edge attributes
are dropped: none of the victim models reads them.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import ClassVar

import networkx as nx
import torch
from torch_geometric.data import Data
from torch_geometric.datasets import TUDataset
from torch_geometric.utils import degree, from_networkx

from gnnbackdoor.datasets.base import DATASETS, DataLocation, GraphDataset
from gnnbackdoor.errors import ConfigError


class _TUGraphDataset(GraphDataset):
    """A TUDataset read by PyG from ``<folder>/raw/<folder>_*.txt``."""

    task: ClassVar[str] = "graph"
    reference = "TUDataset (Morris et al., 2020), via torch_geometric.datasets.TUDataset"
    feature_note = "one-hot node labels (PyG's default)"
    optional_files: ClassVar[list[str]] = ["node_labels"]
    #: Whether PyG appends the continuous node attributes to the one-hot labels.
    use_node_attr: bool = False
    #: Whether the dataset ships node attributes (``data.node_attributes`` may add them).
    has_node_attributes: ClassVar[bool] = False

    #: Whether the attribute columns are standardised (set with ``with_node_attributes``).
    standardize_attributes: bool = False

    def with_node_attributes(self) -> _TUGraphDataset:
        """This dataset with its continuous node attributes, standardised, beside the one-hot
        node labels in ``x`` (PyG's ``use_node_attr``); set by ``--set data.node_attributes=true``.

        Raw attributes span very different scales (ENZYMES: counts up to hundreds beside 0/1
        flags), which left GCN/GIN near chance; each attribute column is shifted and scaled to
        zero mean and unit variance over all nodes of the dataset (a label-free statistic).
        """
        if not self.has_node_attributes:
            raise ConfigError(f"{self.registered_name} has no node attributes")
        self.use_node_attr = True
        self.standardize_attributes = True
        return self

    def _files(self) -> list[str]:
        parts = ["A", "graph_indicator", "graph_labels", *self.optional_files]
        if self.use_node_attr and "node_attributes" not in parts:
            parts.append("node_attributes")
        return [f"{self.folder}_{part}.txt" for part in parts]

    def stage(self, location: DataLocation):  # type: ignore[override]
        self.raw_files = self._files()
        if self.use_node_attr and "node_attributes" not in type(self).optional_files:
            # processed files depend on the raw files present: keep them apart
            location = replace(location, cache_dir=location.cache_dir / "node-attributes")
        return super().stage(location)

    def load(self, location: DataLocation) -> list[Data]:
        root = self.stage(location)
        dataset = TUDataset(str(root), self.folder or "", use_node_attr=self.use_node_attr)
        graphs = [_strip(dataset[i]) for i in range(len(dataset))]
        if self.standardize_attributes:
            standardize_columns(graphs, range(dataset.num_node_attributes))
        return self.encode_features(graphs)

    def encode_features(self, graphs: list[Data]) -> list[Data]:
        """Hook for datasets without usable node features; the default keeps ``x``."""
        for graph in graphs:
            graph.x = graph.x.float()
        return graphs


def standardize_columns(graphs: list[Data], columns: range) -> None:
    """Shift and scale ``x[:, columns]`` of every graph, in place, to zero mean and unit
    variance over all nodes of ``graphs``; constant columns are only shifted."""
    if len(columns) == 0:
        return
    index = torch.tensor(list(columns))
    stacked = torch.cat([g.x[:, index].double() for g in graphs])
    mean, std = stacked.mean(0), stacked.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    for graph in graphs:
        x = graph.x.double()
        x[:, index] = (x[:, index] - mean) / std
        graph.x = x.float()


def _strip(graph: Data) -> Data:
    """Keep only ``x``, ``edge_index`` and ``y``; make ``y`` a ``[1]`` long tensor.

    A graph without ``x`` (COLLAB) also keeps its node count, which the edges alone cannot
    give (isolated nodes), until a feature hook sets ``x``."""
    stripped = Data(x=graph.x, edge_index=graph.edge_index, y=graph.y.view(1).long())
    if graph.x is None:
        stripped.num_nodes = graph.num_nodes
    return stripped


def _encode_degrees(deg: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(deg.clamp(max=width - 1), width).float()


def degree_features(graph: Data, width: int) -> torch.Tensor:
    """``[N, width]`` float: each node's one-hot degree in ``graph``, capped at ``width - 1``
    (the encoding :func:`one_hot_degree` writes)."""
    return _encode_degrees(degree(graph.edge_index[0], graph.num_nodes).long(), width)


def one_hot_degree(graphs: list[Data], max_degree: int | None = None) -> list[Data]:
    """Set ``x`` to the one-hot encoding of each node's degree (PyG's ``OneHotDegree``
    convention), capped at ``max_degree`` (default: the largest degree in ``graphs``)."""
    degrees = [degree(g.edge_index[0], g.num_nodes).long() for g in graphs]
    cap = max_degree
    if cap is None:
        cap = max(int(d.max()) for d in degrees if len(d))
    for graph, deg in zip(graphs, degrees, strict=True):
        graph.x = _encode_degrees(deg, cap + 1)
        if "num_nodes" in graph:
            del graph.num_nodes  # ``x`` holds the count now; a stored one would go stale
    return graphs


@DATASETS.register("AIDS")
class AIDS(_TUGraphDataset):
    folder = "AIDS"
    has_node_attributes = True


@DATASETS.register("ENZYMES")
class ENZYMES(_TUGraphDataset):
    folder = "ENZYMES"
    has_node_attributes = True


@DATASETS.register("DHFR")
class DHFR(_TUGraphDataset):
    folder = "DHFR"
    has_node_attributes = True


@DATASETS.register("NCI1")
class NCI1(_TUGraphDataset):
    folder = "NCI1"


@DATASETS.register("PROTEINS")
class PROTEINS(_TUGraphDataset):
    folder = "PROTEINS"
    has_node_attributes = True


@DATASETS.register("MUTAG")
class MUTAG(_TUGraphDataset):
    folder = "MUTAG"


@DATASETS.register("Bitcoin")
class Bitcoin(_TUGraphDataset):
    """Bitcoin transaction graphs of GCleaner, stored in TU layout (not a PyG built-in)."""

    folder = "Bitcoin"
    reference = "Bitcoin graphs of zaixizhang/graphbackdoor, converted to TU layout"
    feature_note = "one-hot node tag (2 values)"


@DATASETS.register("Fingerprint")
class Fingerprint(_TUGraphDataset):
    """TU Fingerprint, all 15 classes; node features are the 2 node attributes (it has no
    node labels)."""

    folder = "Fingerprint"
    optional_files: ClassVar[list[str]] = ["node_attributes"]
    use_node_attr = True
    has_node_attributes = True
    empty_graphs = 651
    feature_note = "the 2 continuous node attributes (TU Fingerprint has no node labels)"


@DATASETS.register("COLLAB")
class COLLAB(_TUGraphDataset):
    """TU COLLAB; it has no node features, so ``x`` is the one-hot node degree."""

    folder = "COLLAB"
    optional_files: ClassVar[list[str]] = []
    feature_note = "one-hot node degree (COLLAB has no node features)"

    def encode_features(self, graphs: list[Data]) -> list[Data]:
        return one_hot_degree(graphs)


@DATASETS.register("Motifs")
class Motifs(GraphDataset):
    """Embedded default for graph classification: 300 random base graphs (Barabási–Albert,
    8-16 nodes) each carrying one motif that sets its class (0: house, 1: 5-cycle, 2: star).
    Features: one-hot degree capped at 7. Generated from a fixed seed; needs no files."""

    task: ClassVar[str] = "graph"
    reference = "generated with networkx (barabasi_albert_graph, house/cycle/star motifs)"
    feature_note = "one-hot node degree capped at 7"
    num_graphs = 300

    def load(self, location: DataLocation) -> list[Data]:
        rng = random.Random(1234)
        motifs = [nx.house_graph(), nx.cycle_graph(5), nx.star_graph(4)]
        graphs = []
        for index in range(self.num_graphs):
            label = index % len(motifs)
            base = nx.barabasi_albert_graph(rng.randint(8, 16), 1, seed=rng.randint(0, 10**6))
            offset = base.number_of_nodes()
            motif = nx.relabel_nodes(motifs[label], {n: n + offset for n in motifs[label]})
            graph = nx.union(base, motif)
            graph.add_edge(rng.randrange(offset), offset)
            data = from_networkx(nx.convert_node_labels_to_integers(graph))
            graphs.append(
                Data(edge_index=data.edge_index, num_nodes=data.num_nodes, y=torch.tensor([label]))
            )
        return one_hot_degree(graphs, max_degree=7)
