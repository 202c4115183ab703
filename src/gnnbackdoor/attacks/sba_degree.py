"""SBA on degree-featured graphs, with the trigger nodes' degree features recomputed.

Datasets without node features (COLLAB) get the one-hot node degree as ``x`` when they are
loaded (:func:`gnnbackdoor.datasets.graph.one_hot_degree`). SBA (Zhang et al., SACMAT 2021)
only rewires the chosen nodes, so under plain :class:`~gnnbackdoor.attacks.sba.SBA` the trigger
nodes keep the degree they had *before* the trigger as their feature: the model sees a
structure that its input features contradict. A service that computes degree features from the
graph it receives would instead see the trigger nodes' new degrees. This variant is that
reading: after embedding, the trigger nodes' rows of ``x`` are the one-hot encoding of their
degree in the triggered graph, capped at the dataset's largest encoded degree (PyG's
``OneHotDegree`` convention). Only the trigger nodes' degrees change (the edges among them are
replaced; every other edge stays), so no other row is touched.

It exists to measure why SBA stays near its clean-model ASR on COLLAB (issue 14 item 3):
everything else (trigger drawing, positions, poisoning) is :class:`SBA`'s, from the same
generator stream, so the two differ only in the feature refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import ATTACKS
from gnnbackdoor.attacks.sba import SBA
from gnnbackdoor.datasets.graph import degree_features
from gnnbackdoor.errors import ConfigError

if TYPE_CHECKING:
    from gnnbackdoor.contracts.context import GraphContext


def encodes_degree(graph: Data) -> bool:
    """Whether ``graph.x`` (``[N, F]``) is the one-hot node degree capped at ``F - 1``."""
    x = graph.x
    if x is None or x.dim() != 2 or x.size(1) < 1:
        return False
    return bool(torch.equal(x, degree_features(graph, x.size(1)).to(x.dtype)))


def refresh_degree_features(graph: Data, positions: Tensor) -> Data:
    """``graph`` with the rows of ``x`` at ``positions`` (``[size]`` long) set to those nodes'
    one-hot degree in ``graph`` (width ``x.size(1)``); modified in place and returned (callers
    pass a fresh copy)."""
    fresh = degree_features(graph, graph.x.size(1)).to(graph.x.dtype)
    x = graph.x.clone()
    x[positions] = fresh[positions]
    graph.x = x
    return graph


@ATTACKS.register("sba-degree")
@dataclass
class SBADegree(SBA):
    """SBA whose trigger nodes carry their new one-hot degree as their features.

    Attributes: as :class:`~gnnbackdoor.attacks.sba.SBA`.

    Raises:
        ConfigError: from ``fit`` when a training graph's features are not its one-hot node
            degree (the refresh would write features of another kind).
    """

    reference = (
        "Zhang et al., Backdoor Attacks to Graph Neural Networks, SACMAT 2021; features "
        "recomputed from the triggered structure (one-hot degree, PyG OneHotDegree)"
    )

    def fit(self, ctx: GraphContext) -> SBADegree:
        """Check that the training graphs' features are one-hot degrees, then fit as SBA."""
        self._check_degree_features(ctx.split.train)
        super().fit(ctx)
        return self

    @staticmethod
    def _check_degree_features(graphs: Sequence[Data]) -> None:
        for graph in graphs:
            if not encodes_degree(graph):
                raise ConfigError(
                    "attack sba-degree needs one-hot node-degree features (COLLAB, Motifs); "
                    "this dataset's features are not its nodes' degrees: use sba"
                )

    def _embed(self, graph: Data) -> tuple[Data, Tensor]:
        triggered, positions = super()._embed(graph)
        return refresh_degree_features(triggered, positions), positions

    def trigger_info(self) -> dict[str, Any]:
        return {**super().trigger_info(), "features": "trigger nodes' one-hot degree recomputed"}
