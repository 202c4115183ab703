"""Single-graph datasets for link prediction: Planetoid, CitationFull, Coauthor, and a generated
stochastic block model that needs no files."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch_geometric.transforms as T
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.datasets import CitationFull, Coauthor, Planetoid
from torch_geometric.utils import to_undirected

from gnnbackdoor.datasets.base import DATASETS, DataLocation, GraphDataset

_PLANETOID_SUFFIXES = ["x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"]


class _LinkDataset(GraphDataset):
    task: ClassVar[str] = "link"


class _PlanetoidDataset(_LinkDataset):
    reference = "Planetoid (Yang et al., 2016), via torch_geometric.datasets.Planetoid"
    feature_note = "bag-of-words, as PyG loads it"

    def load(self, location: DataLocation) -> Data:
        root = self.stage(location)
        return Planetoid(str(root), self.folder)[0]


@DATASETS.register("Cora")
class Cora(_PlanetoidDataset):
    folder = "Cora"
    raw_files = [f"ind.cora.{s}" for s in _PLANETOID_SUFFIXES]


@DATASETS.register("CiteSeer")
class CiteSeer(_PlanetoidDataset):
    folder = "CiteSeer"
    raw_files = [f"ind.citeseer.{s}" for s in _PLANETOID_SUFFIXES]


@DATASETS.register("PubMed")
class PubMed(_PlanetoidDataset):
    folder = "PubMed"
    raw_files = [f"ind.pubmed.{s}" for s in _PLANETOID_SUFFIXES]


@DATASETS.register("Cora_ML")
class CoraML(_LinkDataset):
    """CitationFull Cora_ML, the whole graph (2,995 nodes)."""

    folder = "cora_ml"
    raw_files = ["cora_ml.npz"]
    reference = "CitationFull (Bojchevski & Günnemann, 2018), via torch_geometric.datasets"
    feature_note = "binary bag-of-words (PyG sets every positive attribute to 1)"

    def load(self, location: DataLocation) -> Data:
        root = self.stage(location)
        return CitationFull(str(root), "Cora_ML")[0]


@DATASETS.register("Cora_ML_LCC")
class CoraMLLargestComponent(CoraML):
    """Cora_ML restricted to its largest connected component (2,810 nodes), as Link-Backdoor
    uses it (its Table 2)."""

    def load(self, location: DataLocation) -> Data:
        return T.LargestConnectedComponents()(super().load(location))


@DATASETS.register("CS")
class CoauthorCS(_LinkDataset):
    folder = "CS"
    raw_files = ["ms_academic_cs.npz"]
    reference = "Coauthor CS (Shchur et al., 2018), via torch_geometric.datasets.Coauthor"
    feature_note = "keyword bag-of-words, as PyG loads it"

    def load(self, location: DataLocation) -> Data:
        root = self.stage(location)
        return Coauthor(str(root), "CS")[0]


@DATASETS.register("SBM")
class StochasticBlockModel(_LinkDataset):
    """Embedded default for link prediction: a 4-block stochastic block model, 240 nodes,
    with 32 binary features whose on-probability depends on the block. Generated from a fixed
    seed, so it is the same graph on every machine and needs no files."""

    reference = "generated with torch_geometric.utils.stochastic_blockmodel_graph"
    feature_note = "32 binary features, block-dependent Bernoulli(0.6 / 0.05)"
    num_blocks = 4
    block_size = 60
    num_features = 32
    p_in = 0.12
    p_out = 0.008

    def load(self, location: DataLocation) -> Data:
        generator = torch.Generator().manual_seed(1234)
        y = torch.arange(self.num_blocks).repeat_interleave(self.block_size)
        probs = torch.full((self.num_blocks, self.num_blocks), self.p_out)
        probs.fill_diagonal_(self.p_in)
        edge_index = undirected_block_model(y, probs, generator)
        per_block = self.num_features // self.num_blocks
        on_prob = torch.full((len(y), self.num_features), 0.05)
        for block in range(self.num_blocks):
            cols = slice(block * per_block, (block + 1) * per_block)
            on_prob[y == block, cols] = 0.6
        x = torch.bernoulli(on_prob, generator=generator)
        return Data(x=x, edge_index=edge_index, y=y)


def undirected_block_model(block: Tensor, probs: Tensor, generator: torch.Generator) -> Tensor:
    """An undirected stochastic block model: each node pair ``i < j`` is an edge with
    probability ``probs[block[i], block[j]]``, drawn from ``generator``.

    Written out because ``torch_geometric.utils.stochastic_blockmodel_graph`` draws from
    torch's global generator (it takes none); this is the same computation (pairs from
    ``torch.combinations``, one Bernoulli draw each), so a generator seeded like the global one
    gives the same graph.

    Args:
        block: ``[N]`` long, each node's block.
        probs: ``[K, K]`` symmetric edge probabilities between blocks.
        generator: The random source.

    Returns:
        ``edge_index`` ``[2, 2E]`` with both directions of every edge, coalesced.
    """
    row, col = torch.combinations(torch.arange(block.numel()), r=2).t()
    mask = torch.bernoulli(probs[block[row], block[col]], generator=generator).to(torch.bool)
    return to_undirected(torch.stack([row[mask], col[mask]], dim=0), num_nodes=block.numel())
