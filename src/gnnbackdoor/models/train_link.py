"""Training and evaluation of link predictors, with early stopping on validation AUC."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.errors import ConfigError
from gnnbackdoor.metrics import average_precision, roc_auc
from gnnbackdoor.models.base import LinkPredictor
from gnnbackdoor.models.link import sample_negative_pairs
from gnnbackdoor.utils.progress import progress_bar

#: Called after each epoch with ``(epoch, model)``; may return a new training graph that
#: replaces the current one from the next epoch on (Link-Backdoor re-optimises its triggers so).
EpochCallback = Callable[[int, LinkPredictor], Data | None]


@dataclass
class LinkTrainConfig:
    """Training settings for link predictors.

    Attributes:
        lr: Adam learning rate of the encoder, the same for every link victim (Link-Backdoor
            trains all five alike). The ARGA and GIC papers use 0.001; see the sensitivity
            block of ``experiments/clean_models.yaml``.
        max_epochs: Upper bound on epochs.
        patience: Stop after this many epochs without a better validation AUC (Link-Backdoor
            uses 100).
        min_epochs: Never stop before this epoch.
        weight_decay: Adam weight decay.
        discriminator_steps: Discriminator updates per epoch for ARGA/ARVGA (PyG's example: 5).
        discriminator_lr: Adam learning rate of the ARGA/ARVGA discriminator (PyG's example:
            0.001).
    """

    lr: float = 0.01
    max_epochs: int = 1000
    patience: int = 100
    min_epochs: int = 0
    weight_decay: float = 0.0
    discriminator_steps: int = 5
    discriminator_lr: float = 0.001

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.max_epochs < 1 or self.patience < 1:
            raise ConfigError("train: lr must be > 0, max_epochs and patience at least 1")


@dataclass
class TrainReport:
    """What a training run did: epochs, the best epoch and its validation score, seconds."""

    epochs: int = 0
    best_epoch: int = 0
    best_val: float = float("nan")
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs, 1)


@torch.no_grad()
def link_scores(model: LinkPredictor, graph: Data, pairs: Tensor) -> Tensor:
    """Link probabilities ``[P]`` of ``pairs`` ``[2, P]`` with message passing on ``graph``,
    in eval mode (no dropout, VGAE means); restores the model's mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        z = model.encode(graph.x, graph.edge_index, getattr(graph, "edge_weight", None))
        return torch.sigmoid(model.score(z, pairs))
    finally:
        model.train(was_training)


def evaluate_links(model: LinkPredictor, split: Data, with_ap: bool = True) -> dict[str, float]:
    """AUC (and AP unless ``with_ap`` is false) on ``split.pos_edge_label_index`` vs
    ``split.neg_edge_label_index``."""
    pairs = torch.cat([split.pos_edge_label_index, split.neg_edge_label_index], dim=1)
    scores = link_scores(model, split, pairs)
    num_pos = split.pos_edge_label_index.size(1)
    pos, neg = scores[:num_pos], scores[num_pos:]
    result = {"auc": roc_auc(pos, neg)}
    if with_ap:
        result["ap"] = average_precision(pos, neg)
    return result


def train_link_model(
    model: LinkPredictor,
    train: Data,
    val: Data,
    config: LinkTrainConfig,
    callback: EpochCallback | None = None,
    desc: str = "train",
) -> TrainReport:
    """Train ``model`` in place; keep the weights of the epoch with the best validation AUC.

    Args:
        model: A freshly built :class:`LinkPredictor`.
        train: ``x``, ``edge_index`` (message passing) and ``pos_edge_label_index``
            (supervision; negatives are sampled anew each epoch); optional ``edge_weight``.
        val: Validation split (see :func:`evaluate_links`).
        config: Optimiser and stopping settings.
        callback: Optional per-epoch hook that may swap the training graph (see
            :data:`EpochCallback`).
        desc: Progress-bar label.
    """
    optimiser = torch.optim.Adam(
        model.encoder_parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    disc_optimiser = (
        torch.optim.Adam(model.discriminator_parameters(), lr=config.discriminator_lr)
        if model.has_discriminator
        else None
    )
    report = TrainReport()
    best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    start = time.perf_counter()
    bar = progress_bar(desc, total=config.max_epochs, unit="epoch")
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        pos = train.pos_edge_label_index
        neg = sample_negative_pairs(train.edge_index, train.num_nodes, pos.size(1))
        edge_weight = getattr(train, "edge_weight", None)
        if disc_optimiser is not None:  # ARGA: discriminator steps on detached embeddings first
            with torch.no_grad():
                z_fixed = model.encode(train.x, train.edge_index, edge_weight)
            for _ in range(config.discriminator_steps):
                disc_optimiser.zero_grad()
                model.discriminator_loss(z_fixed).backward()
                disc_optimiser.step()
        optimiser.zero_grad()
        loss, _ = model.training_loss(train.x, train.edge_index, pos, neg, edge_weight)
        loss.backward()
        optimiser.step()

        val_auc = evaluate_links(model, val, with_ap=False)["auc"]  # AP is not used here
        report.history.append(val_auc)
        report.epochs = epoch
        if not val_auc <= report.best_val:  # also true for the first epoch (nan)
            report.best_val, report.best_epoch, since_best = val_auc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        if callback is not None:
            replacement = callback(epoch, model)
            if replacement is not None:
                train = replacement
        bar.update()
        if since_best >= config.patience and epoch >= config.min_epochs:
            bar.stop_early(
                f"no validation gain in {config.patience} epochs, best epoch {report.best_epoch}"
            )
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    report.seconds = time.perf_counter() - start
    return report
