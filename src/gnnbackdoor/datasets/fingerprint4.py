"""``Fingerprint4``: the 4-class, 1,661-graph subset of TU Fingerprint used by GCleaner.

GCleaner's Table II lists Fingerprint with 1,661 graphs, 8.15 nodes and 6.81 edges on
average and class counts 538 / 517 / 109 / 497. TU Fingerprint has 2,800 graphs in 15 classes,
many of them empty (no nodes). Keeping the graphs with at least one node of TU classes 4, 0,
2 and 5 gives exactly those counts (538, 517, 109, 497), 1,661 graphs, 8.148 nodes and
6.808 edges on average, so that is the subset; its classes are renumbered 0-3 in that order
(so the paper's target label 1 is TU class 0).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch_geometric.data import Data

from gnnbackdoor.datasets.base import DATASETS, DataLocation
from gnnbackdoor.datasets.graph import Fingerprint

#: TU Fingerprint class -> GCleaner's class (Table II order).
CLASS_MAP: dict[int, int] = {4: 0, 0: 1, 2: 2, 5: 3}


@DATASETS.register("Fingerprint4")
class Fingerprint4(Fingerprint):
    """GCleaner's Fingerprint: TU Fingerprint classes 4, 0, 2, 5 (renumbered 0-3), graphs
    with at least one node; 1,661 graphs; the 2 node attributes as features."""

    reference = "GCleaner Table II subset of TU Fingerprint (Morris et al., 2020)"
    feature_note: ClassVar[str] = "the 2 continuous node attributes (TU Fingerprint subset)"
    empty_graphs: ClassVar[int] = 0  # the subset keeps only graphs with a node

    def load(self, location: DataLocation) -> list[Data]:
        graphs = []
        for graph in super().load(location):
            label = int(graph.y.view(-1)[0])
            if label in CLASS_MAP and graph.num_nodes > 0:
                graphs.append(
                    Data(
                        x=graph.x,
                        edge_index=graph.edge_index,
                        y=torch.tensor([CLASS_MAP[label]]),
                    )
                )
        return graphs
