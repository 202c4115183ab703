"""Flags for models whose low ASR says nothing (issue 20): a purified model that predicts
one class for nearly everything has ASR 0 without having unlearned anything, and a victim
that already predicts the target class for untriggered graphs has an ASR that is not the
trigger's doing."""

from __future__ import annotations

from torch import Tensor

#: Points by which the majority share of predictions may exceed the data's before a model
#: counts as collapsed.
COLLAPSE_MARGIN = 0.10


def class_histogram(predicted: Tensor, num_classes: int) -> list[float]:
    """Share of ``predicted`` labels ``[B]`` in each class (sums to 1; zeros for ``B = 0``)."""
    labels = predicted.view(-1).long()
    if labels.numel() == 0:
        return [0.0] * num_classes
    counts = labels.bincount(minlength=num_classes)[:num_classes].double()
    return (counts / labels.numel()).tolist()


def majority_share(labels: Tensor, num_classes: int) -> float:
    """The largest class share among ``labels`` ``[B]`` (predictions or true labels)."""
    return max(class_histogram(labels, num_classes))


def collapsed(
    predicted: Tensor, labels: Tensor, num_classes: int, margin: float = COLLAPSE_MARGIN
) -> bool:
    """Whether the model's majority share of predictions exceeds the data's majority share
    (``labels``, the true labels of the same graphs) by more than ``margin`` (0.10: ten
    points). A model that predicts the majority class for every graph of a balanced
    dataset (50 % -> 100 %) is collapsed; one that follows the labels is not."""
    excess = majority_share(predicted, num_classes) - majority_share(labels, num_classes)
    return excess > margin + 1e-12  # shares are exact ratios: no rounding flips the flag


def already_target_share(predicted: Tensor, labels: Tensor, target: int) -> float:
    """Among eligible graphs (true label not ``target``), the share the model predicts as
    ``target`` *without* the trigger: the part of an ASR the trigger does not earn.
    ``nan`` when no graph is eligible."""
    eligible = labels.view(-1) != target
    if not bool(eligible.any()):
        return float("nan")
    return float((predicted.view(-1)[eligible] == target).float().mean())
