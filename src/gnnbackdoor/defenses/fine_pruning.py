"""Fine-pruning carried to graph classifiers: GraphProt's ``Fine-pruning`` baseline (Tables
1-2).

Source. Liu, Dolan-Gavitt and Garg, "Fine-Pruning: Defending Against Backdooring Attacks on
Deep Neural Networks" (RAID 2018), Sec. 4: the defender runs clean inputs through the
network, records the average activation of each channel of the *last convolutional layer*,
prunes (removes) the channels in increasing order of that activation, and then fine-tunes
the pruned network on the same clean data ("fine-pruning", Sec. 4.3). GraphProt (Sec. 5.1)
describes the baseline as "removing partial GNN parameters and performing fine-tuning".

Adaptation to GNNs (our decisions; neither paper gives one):

* The last convolutional layer's channels become the units of the *graph embedding*: the
  encoder's node embeddings after the last message-passing layer (after the jumping-knowledge
  readout where the victim has one), pooled over each graph
  (:meth:`~gnnbackdoor.models.base.GraphClassifier.embed`, ``[B, hidden]``). That is the
  last hidden representation before the classifier head, as the last convolutional layer is
  before Liu et al.'s fully connected layers. Pooling is linear per unit, so masking a unit
  of the pooled embedding is masking that channel on every node.
* "Activation" is the mean *absolute* value of a unit over the defender's clean graphs:
  the encoder's last layer has no activation function in our victims (its outputs are signed),
  and a unit is dormant when its output is near zero, not when it is negative (Liu et al.'s
  channels follow a ReLU, where the two coincide).
* A fixed share of the units is pruned (``prune_fraction``), not Liu et al.'s rule of pruning
  until the clean validation accuracy drops by 4 %: the defender's few clean graphs are the
  only labelled data here, and the share is a swept setting.
* Pruning is a mask: the columns of the head's first linear layer that read the pruned units
  are held at zero (``torch.nn.utils.prune.custom_from_mask``, so they stay zero through the
  fine-tuning; made permanent with ``prune.remove`` afterwards). This equals removing the
  units and leaves a model of the victim's architecture (saved and loaded as any victim).
* Fine-tuning: ``fine_tune_epochs`` epochs of Adam at ``lr`` with cross-entropy on the
  defender's clean graphs (the same graphs that ranked the units, as in Liu et al.), every
  parameter trainable.

Randomness: mini-batches are shuffled with ``ctx.generator`` (the defense stage's); dropout
draws from torch's global generator, which the pipeline seeds for the stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils import prune
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from gnnbackdoor.contracts.context import GraphContext
from gnnbackdoor.contracts.results import RepairResult
from gnnbackdoor.defenses.base import DEFENSES, ModelRepairDefense
from gnnbackdoor.models.base import GraphClassifier
from gnnbackdoor.settings import NonNegativeInt, OpenFraction, PositiveFloat, PositiveInt

#: ``prune_fraction`` lies in [0, 1): pruning every unit would leave a constant classifier.
PruneShare = Annotated[float, Field(ge=0, lt=1)]


def head_input_layer(model: GraphClassifier) -> nn.Linear:
    """The first linear layer of ``model``'s head: the one that reads the graph embedding.

    Raises:
        TypeError: The head has no linear layer."""
    for module in model.head.modules():
        if isinstance(module, nn.Linear):
            return module
    raise TypeError(f"{type(model).__name__}'s head has no linear layer to prune")


@torch.no_grad()
def unit_activity(model: GraphClassifier, graphs: Sequence[Data], batch_size: int) -> torch.Tensor:
    """Mean absolute activation ``[hidden]`` of each graph-embedding unit over ``graphs``, in
    eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    total: torch.Tensor | None = None
    count = 0
    try:
        for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
            emb = model.embed(batch.x, batch.edge_index, batch.batch, num_graphs=batch.num_graphs)
            part = emb.abs().sum(dim=0)
            total = part if total is None else total + part
            count += emb.size(0)
    finally:
        model.train(was_training)
    assert total is not None
    return total / max(count, 1)


def units_to_prune(activity: torch.Tensor, fraction: float) -> list[int]:
    """The ``floor(fraction * hidden)`` least active units, ties to the lower index, sorted."""
    count = int(fraction * activity.numel())
    order = sorted(range(activity.numel()), key=lambda u: (float(activity[u]), u))
    return sorted(order[:count])


@DEFENSES.register("fine-pruning")
@dataclass
class FinePruning(ModelRepairDefense):
    """Prune the graph-embedding units least active on the defender's clean graphs, then
    fine-tune on them (Liu et al. 2018, carried to GNNs).

    Attributes:
        holding_rate: Share of the test split handed to the defender as clean graphs (0, 1);
            0.1 by default (GraphProt does not say what its baseline was given).
        prune_fraction: Share of the graph-embedding units pruned, in [0, 1).
        fine_tune_epochs: Epochs of fine-tuning after pruning (0: prune only).
        lr: Adam learning rate of the fine-tuning.
        batch_size: Graphs per fine-tuning mini-batch.

    ``repair`` raises nothing for valid settings; settings out of range raise
    :class:`~gnnbackdoor.errors.ConfigError` on construction.
    """

    reference: ClassVar[str] = (
        "Liu, Dolan-Gavitt and Garg, Fine-Pruning: Defending Against Backdooring Attacks on "
        "Deep Neural Networks (RAID 2018); GraphProt's Fine-pruning baseline"
    )

    holding_rate: OpenFraction = 0.1
    prune_fraction: PruneShare = 0.5
    fine_tune_epochs: NonNegativeInt = 20
    lr: PositiveFloat = 0.001
    batch_size: PositiveInt = 32

    def repair(
        self, model: GraphClassifier, clean_graphs: Sequence[Data], ctx: GraphContext
    ) -> RepairResult:
        """``model`` itself, pruned and fine-tuned.

        Args:
            model: The (possibly backdoored) classifier; modified in place and returned.
            clean_graphs: The defender's clean graphs (not modified).
            ctx: The run; ``ctx.generator`` shuffles the fine-tuning batches.

        Returns:
            The model, with info ``fp_units`` (graph-embedding width), ``fp_pruned_units``,
            ``fp_pruned_activity_share`` (the pruned units' share of the total mean
            activity), ``fp_fine_tune_loss_first`` / ``_last`` (mean cross-entropy of the
            first and last fine-tuning epochs; absent without fine-tuning).
        """
        graphs = list(clean_graphs)
        activity = unit_activity(model, graphs, ctx.train_config.eval_batch_size)
        pruned = units_to_prune(activity, self.prune_fraction)
        layer = head_input_layer(model)
        mask = torch.ones_like(layer.weight)
        mask[:, pruned] = 0
        prune.custom_from_mask(layer, "weight", mask)
        losses = self._fine_tune(model, graphs, ctx.generator)
        prune.remove(layer, "weight")
        model.eval()
        total = float(activity.sum())
        info: dict[str, float] = {
            "fp_units": float(activity.numel()),
            "fp_pruned_units": float(len(pruned)),
            "fp_pruned_activity_share": (
                float(activity[pruned].sum()) / total if total > 0 else float("nan")
            ),
        }
        if losses:
            info["fp_fine_tune_loss_first"] = losses[0]
            info["fp_fine_tune_loss_last"] = losses[-1]
        return RepairResult(model, info)

    def _fine_tune(
        self, model: GraphClassifier, graphs: list[Data], generator: torch.Generator
    ) -> list[float]:
        """Mean cross-entropy of each fine-tuning epoch."""
        if self.fine_tune_epochs == 0 or not graphs:
            return []
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
        losses: list[float] = []
        model.train()
        for _ in range(self.fine_tune_epochs):
            total, seen = 0.0, 0
            loader = DataLoader(
                graphs, batch_size=self.batch_size, shuffle=True, generator=generator
            )
            for batch in loader:
                optimiser.zero_grad()
                logits = model(batch.x, batch.edge_index, batch.batch, num_graphs=batch.num_graphs)
                loss = F.cross_entropy(logits, batch.y.view(-1))
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * batch.num_graphs
                seen += batch.num_graphs
            losses.append(total / max(seen, 1))
        return losses
