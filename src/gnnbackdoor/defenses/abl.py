"""Anti-backdoor learning (ABL) carried to graph classification: GCleaner's ``ABL`` baseline
(Table III).

Source. Li, Lyu, Koren, Lyu, Li and Ma, "Anti-Backdoor Learning: Training Clean Models on
Poisoned Data" (NeurIPS 2021), Sec. 4 and their released configuration. ABL trains on the
poisoned training set in two stages:

1. *Backdoor isolation* (the first ``T_te`` epochs): local gradient ascent (LGA), Eq. 4:
   the loss of a mini-batch is ``sign(CE - gamma) * CE``, which holds the loss of the easy
   examples near ``gamma`` while the backdoor examples, learned faster, fall below it; then
   the ``p`` share of the training examples with the lowest loss is isolated
   (``T_te = 20``, ``gamma = 0.5``, ``p = 1 %`` in the paper).
2. *Backdoor unlearning*: training continues with cross-entropy on the examples not isolated
   (the released code's ``tuning_epochs = 60``), then the isolated examples are unlearned by
   gradient ascent, minimising ``-CE`` on them (the paper's ``L_GGA``; 20 epochs at a small
   learning rate, 5e-4 in the released code). The paper trains ``T = 100`` epochs in all:
   20 + 60 + 20, our defaults.

GCleaner (Sec. 5.2) "transfer[s] the anti-backdoor learning (ABL) ... to graph fields"
without giving settings. Our adaptation (decisions):

* An example is a graph; the loss is the graph's cross-entropy on the victim's logits. The
  model is a fresh victim of the run's architecture (``ctx.build_model``).
* Optimiser: Adam with the run's learning rate and batch size (our victims' optimiser) for
  the isolation and tuning epochs; the unlearning uses Adam at ``unlearning_lr``. Li et al.
  use SGD at 0.1 for images.
* The isolated share rounds to at least one graph. The per-graph losses that choose it are
  computed in eval mode after the isolation epochs.
* No model selection: the model after the unlearning epochs is returned (as in ABL); the
  validation graphs are unused.

Randomness: mini-batches are shuffled with ``ctx.generator`` (the defense stage's); module
initialisation and dropout draw from torch's global generator, which the pipeline seeds for
the stage. The pipeline scores the isolated graphs as ABL's detection (``flagged``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from gnnbackdoor.contracts.context import GraphContext
from gnnbackdoor.contracts.results import TrainingDefenseResult
from gnnbackdoor.defenses.base import DEFENSES, TrainingDefense
from gnnbackdoor.models.base import GraphClassifier
from gnnbackdoor.settings import NonNegativeInt, OpenFraction, PositiveFloat, PositiveInt

#: A mini-batch's loss from its logits ``[B, C]`` and labels ``[B]``.
BatchLoss = Callable[[Tensor, Tensor], Tensor]


def lga_loss(gamma: float) -> BatchLoss:
    """ABL's local gradient ascent (Li et al. 2021, Eq. 4) on a mini-batch's mean
    cross-entropy: ``sign(CE - gamma) * CE``."""

    def loss(logits: Tensor, labels: Tensor) -> Tensor:
        ce = F.cross_entropy(logits, labels)
        return torch.sign(ce - gamma) * ce

    return loss


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels)


def ascent(logits: Tensor, labels: Tensor) -> Tensor:
    """Gradient ascent on the cross-entropy (ABL's unlearning): ``-CE``."""
    return -F.cross_entropy(logits, labels)


def run_epochs(
    model: GraphClassifier,
    graphs: Sequence[Data],
    epochs: int,
    optimiser: torch.optim.Optimizer,
    loss_fn: BatchLoss,
    batch_size: int,
    generator: torch.Generator,
) -> list[float]:
    """``epochs`` epochs of ``loss_fn`` on ``graphs`` (batches shuffled with ``generator``);
    the mean loss of each epoch, weighted by batch size. Nothing for no graphs."""
    losses: list[float] = []
    if not graphs:
        return losses
    model.train()
    for _ in range(epochs):
        total, seen = 0.0, 0
        loader = DataLoader(list(graphs), batch_size=batch_size, shuffle=True, generator=generator)
        for batch in loader:
            optimiser.zero_grad()
            logits = model(batch.x, batch.edge_index, batch.batch, num_graphs=batch.num_graphs)
            loss = loss_fn(logits, batch.y.view(-1))
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * batch.num_graphs
            seen += batch.num_graphs
        losses.append(total / max(seen, 1))
    return losses


@torch.no_grad()
def per_graph_loss(model: GraphClassifier, graphs: Sequence[Data], batch_size: int) -> Tensor:
    """Cross-entropy ``[N]`` of each graph under its own label, in eval mode (the model's
    mode is restored)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
            logits = model(batch.x, batch.edge_index, batch.batch, num_graphs=batch.num_graphs)
            out.append(F.cross_entropy(logits, batch.y.view(-1), reduction="none"))
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def lowest(values: Tensor, count: int) -> list[int]:
    """Positions of the ``count`` smallest values (ties to the lower position), sorted."""
    order = sorted(range(values.numel()), key=lambda i: (float(values[i]), i))
    return sorted(order[:count])


@DEFENSES.register("abl")
@dataclass
class ABL(TrainingDefense):
    """Anti-backdoor learning: isolate the training graphs whose loss falls fastest under
    LGA, train on the rest, then unlearn the isolated ones by gradient ascent (Li et al.
    2021, carried to graphs).

    Attributes:
        isolation_epochs: Epochs of LGA training before isolating (ABL's ``T_te``, 20).
        gamma: LGA's loss threshold (ABL: 0.5).
        isolation_ratio: Share of the training graphs isolated, in (0, 1) (ABL: 0.01).
        tuning_epochs: Cross-entropy epochs on the graphs not isolated (ABL's code: 60).
        unlearning_epochs: Gradient-ascent epochs on the isolated graphs (ABL: 20).
        unlearning_lr: Learning rate of the unlearning (ABL's code: 5e-4).

    Settings out of range raise :class:`~gnnbackdoor.errors.ConfigError` on construction.
    """

    reference: ClassVar[str] = (
        "Li et al., Anti-Backdoor Learning: Training Clean Models on Poisoned Data "
        "(NeurIPS 2021); GCleaner's ABL baseline"
    )

    isolation_epochs: PositiveInt = 20
    gamma: PositiveFloat = 0.5
    isolation_ratio: OpenFraction = 0.01
    tuning_epochs: NonNegativeInt = 60
    unlearning_epochs: NonNegativeInt = 20
    unlearning_lr: PositiveFloat = 5e-4

    def train(
        self,
        graphs_train: Sequence[Data],
        graphs_val: Sequence[Data],
        ctx: GraphContext,
        victim: GraphClassifier | None = None,
    ) -> TrainingDefenseResult:
        """A fresh victim trained by ABL on ``graphs_train`` (not modified; ``graphs_val``
        and ``victim`` are unused).

        Returns:
            The model; ``flagged``: the isolated graphs; info ``abl_isolated``,
            ``abl_lga_loss_last`` (mean LGA loss of the last isolation epoch),
            ``abl_isolated_loss`` / ``abl_rest_loss`` (mean per-graph cross-entropy of the
            isolated graphs and of the others when isolating), ``abl_unlearn_loss_last``
            (the isolated graphs' mean cross-entropy after the last unlearning epoch).

        Raises:
            ValueError: ``graphs_train`` is empty.
        """
        graphs = list(graphs_train)
        if not graphs:
            raise ValueError("ABL needs training graphs")
        config = ctx.train_config
        model = ctx.build_model()
        optimiser = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        lga = run_epochs(
            model,
            graphs,
            self.isolation_epochs,
            optimiser,
            lga_loss(self.gamma),
            config.batch_size,
            ctx.generator,
        )
        losses = per_graph_loss(model, graphs, config.eval_batch_size)
        count = min(len(graphs), max(1, round(self.isolation_ratio * len(graphs))))
        isolated = lowest(losses, count)
        chosen = set(isolated)
        rest = [g for i, g in enumerate(graphs) if i not in chosen]
        run_epochs(
            model,
            rest,
            self.tuning_epochs,
            optimiser,
            cross_entropy,
            config.batch_size,
            ctx.generator,
        )
        unlearn = torch.optim.Adam(model.parameters(), lr=self.unlearning_lr)
        isolated_graphs = [graphs[i] for i in isolated]
        run_epochs(
            model,
            isolated_graphs,
            self.unlearning_epochs,
            unlearn,
            ascent,
            config.batch_size,
            ctx.generator,
        )
        model.eval()
        rest_index = [i for i in range(len(graphs)) if i not in chosen]
        info = {
            "abl_isolated": float(count),
            "abl_lga_loss_last": lga[-1],
            "abl_isolated_loss": float(losses[isolated].mean()),
            "abl_rest_loss": float(losses[rest_index].mean()) if rest_index else float("nan"),
            "abl_unlearn_loss_last": float(
                per_graph_loss(model, isolated_graphs, config.eval_batch_size).mean()
            ),
        }
        return TrainingDefenseResult(model, info, kept=None, flagged=isolated)
