"""Graph-classification metrics."""

from __future__ import annotations

from torch import Tensor


def accuracy(predicted: Tensor, labels: Tensor) -> float:
    """Fraction of ``predicted`` labels ``[B]`` equal to ``labels`` ``[B]``; 0.0 when empty."""
    if labels.numel() == 0:
        return 0.0
    return float((predicted.view(-1) == labels.view(-1)).float().mean())
