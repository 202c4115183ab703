"""Exp-BA: explainability-based backdoor (Xu, Xue, Picek, WiseML 2021).

A pretrained model (the run's clean model) and an explainer score every node of a graph; the
trigger (SBA's random graph, Erdős–Rényi by default) replaces the ``k`` most important nodes
(GCleaner App. B: "replaces the nodes with the top-k highest importance values"), or the
least important ones as an option (the paper compares both).

Nodes the explainer scores alike are ordered by gradient saliency, then at random (seeded).
A model can give every node the same importance: the clean GIN on AIDS has a zero gradient
with respect to the node features on all but one test graph (its logits follow the node
count), so GNNExplainer's node mask, which scales features, is all zero, and so is saliency.
Ranking such graphs by node id put every trigger on atoms 0-4 of the molecule; they now get
random nodes, and ``describe()`` counts them (``graphs_without_importance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import ATTACKS
from gnnbackdoor.attacks.importance import Importance, node_scores
from gnnbackdoor.attacks.sba import SBA
from gnnbackdoor.attacks.triggers import ranked_positions, uninformative
from gnnbackdoor.settings import PositiveInt

if TYPE_CHECKING:
    from gnnbackdoor.contracts.context import GraphContext


class Placement(StrEnum):
    """Which nodes the trigger replaces."""

    MOST = "most"
    LEAST = "least"


class ExpExplainer(StrEnum):
    """Explainers Exp-BA offers (a subset of
    :class:`~gnnbackdoor.attacks.importance.Importance`)."""

    GNNEXPLAINER = Importance.GNNEXPLAINER.value
    SALIENCY = Importance.SALIENCY.value


@ATTACKS.register("exp-ba")
@dataclass
class ExpBA(SBA):
    """Explainability-based backdoor: the trigger replaces the most important nodes.

    Attributes:
        placement: ``most`` (default) or ``least`` important nodes.
        explainer: ``gnnexplainer`` (default; ``torch_geometric.explain``) or ``saliency``
            (gradient explainer, much faster).
        explainer_epochs: GNNExplainer optimisation epochs per graph.
    """

    placement: Placement = Placement.MOST
    explainer: ExpExplainer = ExpExplainer.GNNEXPLAINER
    explainer_epochs: PositiveInt = 50
    reference = "Xu et al., Explainability-based Backdoor Attacks Against GNNs, WiseML 2021"

    def _fit_trigger(self, ctx: GraphContext) -> None:
        super()._fit_trigger(ctx)
        model = ctx.clean_model
        if model is None:  # the pipeline trains it first; stand-alone use trains one here
            model = ctx.train_new_model(ctx.split.train, desc="exp-ba pretrained")
        self.model_ = model
        self.no_signal_ = 0

    def _positions(self, graph: Data) -> Tensor:
        scores = node_scores(
            Importance(self.explainer),
            graph,
            self.model_,
            self.generator_,
            self.explainer_epochs,
        )
        # GNNExplainer's hard mask zeroes every node whose gradient vanished (often most of
        # a molecule under GIN): break its ties by gradient saliency, not by node id.
        tie_break = None
        if self.explainer == Importance.GNNEXPLAINER.value:
            tie_break = node_scores(Importance.SALIENCY, graph, self.model_)
        if uninformative(scores) and (tie_break is None or uninformative(tie_break)):
            self.no_signal_ += 1
        return ranked_positions(
            scores,
            self.size_,
            most=self.placement == "most",
            tie_break=tie_break,
            generator=self.generator_,
        )

    def trigger_info(self) -> dict[str, Any]:
        info = super().trigger_info()
        info["placement"] = (
            f"{self.placement} important nodes by {self.explainer} (ties: saliency, then random)"
        )
        info["graphs_without_importance"] = getattr(self, "no_signal_", 0)
        return info
