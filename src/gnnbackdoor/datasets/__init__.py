"""Datasets: PyG loaders over an offline mirror, embedded generated defaults, and splits."""

from gnnbackdoor.datasets import fingerprint4, graph, link  # noqa: F401  (registers the datasets)
from gnnbackdoor.datasets.base import DATASETS, DataLocation, GraphDataset, load_dataset
from gnnbackdoor.datasets.splits import GraphSplit, LinkSplit, split_graphs, split_links

__all__ = [
    "DATASETS",
    "DataLocation",
    "GraphDataset",
    "GraphSplit",
    "LinkSplit",
    "load_dataset",
    "split_graphs",
    "split_links",
]
