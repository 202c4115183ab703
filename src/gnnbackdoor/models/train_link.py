"""Training of link predictors, with early stopping on validation AUC, and their link scores
(the metrics on them are in :mod:`gnnbackdoor.metrics.ranking`)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.errors import ConfigError, TrainingDivergedError
from gnnbackdoor.models.base import LinkPredictor
from gnnbackdoor.models.link import sample_negative_pairs
from gnnbackdoor.settings import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Settings,
)
from gnnbackdoor.utils.progress import progress_bar

logger = logging.getLogger(__name__)

#: Called after each epoch with ``(epoch, model)``; may return a new training graph that
#: replaces the current one from the next epoch on (Link-Backdoor re-optimises its triggers so).
EpochCallback = Callable[[int, LinkPredictor], Data | None]


@dataclass
class LinkTrainConfig(Settings):
    """Training settings for link predictors (ranges declared by the annotations).

    Attributes:
        lr: Adam learning rate of the encoder, the same for every link victim (Link-Backdoor
            trains all five alike). The ARGA and GIC papers use 0.001; see the sensitivity
            block of ``experiments/clean_models.yaml``.
        max_epochs: Upper bound on epochs.
        patience: Stop after this many epochs without a better validation AUC (Link-Backdoor
            uses 100); at least 1.
        min_epochs: Never stop before this epoch.
        weight_decay: Adam weight decay.
        discriminator_steps: Discriminator updates per epoch for ARGA/ARVGA (PyG's example: 5).
        discriminator_lr: Adam learning rate of the ARGA/ARVGA discriminator (PyG's example:
            0.001).
    """

    lr: PositiveFloat = 0.01
    max_epochs: PositiveInt = 1000
    patience: PositiveInt = 100
    min_epochs: NonNegativeInt = 0
    weight_decay: NonNegativeFloat = 0.0
    discriminator_steps: PositiveInt = 5
    discriminator_lr: PositiveFloat = 0.001


@dataclass
class TrainReport:
    """What a training run did: epochs, the best epoch and its validation score, seconds.

    ``diverged_epoch`` is the epoch in which a loss, gradient, weight or validation score
    became non-finite (0: training never diverged); the weights kept are then those of the
    best (or, without validation, the last) finite epoch before it.
    """

    epochs: int = 0
    best_epoch: int = 0
    best_val: float = float("nan")
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)
    diverged_epoch: int = 0

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch > 0

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs, 1)


def check_learning_rate(lr: float, key: str = "train.lr") -> None:
    """Refuse a learning rate that is not a positive number (``nan``) in one line."""
    if not lr > 0:
        raise ConfigError(f"{key} must be a positive number, got {lr}")


def all_finite(model: torch.nn.Module, grads: bool = False) -> bool:
    """Whether every parameter (or, with ``grads``, every gradient present) is finite."""
    tensors = [p.grad if grads else p for p in model.parameters()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t is not None)


def mark_diverged(report: TrainReport, epoch: int, kept_epoch: int, model: torch.nn.Module):
    """Record that training diverged in ``epoch``; with no finite epoch kept
    (``kept_epoch == 0``) stop with one line instead of returning an unusable model.

    The module gets ``diverged_epoch`` too, so a pipeline can record it for models trained
    inside an attack or defense.

    Raises:
        TrainingDivergedError: no finite epoch to keep.
    """
    report.diverged_epoch = epoch
    if kept_epoch == 0:
        raise TrainingDivergedError(
            f"training diverged at epoch {epoch} (non-finite loss, gradient or weights) before "
            "any finite epoch; lower train.lr"
        )
    logger.warning(
        "training diverged at epoch %d; keeping the weights of epoch %d", epoch, kept_epoch
    )
    model.diverged_epoch = epoch


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


def split_scores(model: LinkPredictor, split: Data) -> tuple[Tensor, Tensor]:
    """Link probabilities of ``split.pos_edge_label_index`` ``[P]`` and of
    ``split.neg_edge_label_index`` ``[Q]``, message passing on ``split``."""
    pairs = torch.cat([split.pos_edge_label_index, split.neg_edge_label_index], dim=1)
    scores = link_scores(model, split, pairs)
    num_pos = split.pos_edge_label_index.size(1)
    return scores[:num_pos], scores[num_pos:]


def validation_auc(model: LinkPredictor, split: Data) -> float | None:
    """The early-stopping criterion: AUC of the positive vs. negative pairs of ``split``
    (scikit-learn's ``roc_auc_score``, as :func:`gnnbackdoor.metrics.roc_auc` computes it;
    a training criterion, so it lives with training: ``models/`` sits below ``metrics/``),
    or ``None`` when a score is not finite (the model diverged)."""
    pos, neg = split_scores(model, split)
    scores = torch.cat([pos, neg]).detach().cpu().double()
    if not bool(torch.isfinite(scores).all()):
        return None
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).numpy()
    return float(roc_auc_score(labels, scores.numpy()))


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
        val: Validation split (see :func:`validation_auc`).
        config: Optimiser and stopping settings.
        callback: Optional per-epoch hook that may swap the training graph (see
            :data:`EpochCallback`).
        desc: Progress-bar label.
    """
    check_learning_rate(config.lr)
    check_learning_rate(config.discriminator_lr, "train.discriminator_lr")
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
        if not bool(torch.isfinite(loss)):
            bar.stop_early(f"training diverged at epoch {epoch}")
            mark_diverged(report, epoch, report.best_epoch, model)
            break
        loss.backward()
        optimiser.step()
        val_auc = validation_auc(model, val) if all_finite(model) else None
        if val_auc is None:
            bar.stop_early(f"training diverged at epoch {epoch}")
            mark_diverged(report, epoch, report.best_epoch, model)
            break
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
