"""The value domain of a dataset's node features, and the projection of a generator's raw
output into it.

A generated trigger (GTA) writes features onto its nodes. Written as free values in
``[0, 1]`` they are out of distribution for the usual graph-classification datasets, whose
node features are one-hot node labels (AIDS: 38 atom types; a sigmoid row sums to about
19 where every real row sums to 1): a never-poisoned model then maps the trigger to some
class by itself and the "backdoor" is an adversarial perturbation. :class:`FeatureDomain`
keeps generated rows valid:

- ``onehot``: every clean row is one-hot. The row is the one-hot of the argmax of the raw
  output over the labels seen in the clean graphs; the gradient is the softmax's
  (straight-through estimator, as for the trigger's edges).
- ``binary``: every clean value is 0 or 1 (several may be set). Each value is thresholded at
  ``sigmoid(raw) > 0.5`` with the sigmoid's gradient (straight-through).
- ``range``: continuous values; feature ``f`` is ``low_f + (high_f - low_f) * sigmoid(raw)``
  with ``[low_f, high_f]`` its clean minimum and maximum.
- ``simplex``: ``softmax(raw)`` over the labels seen in the clean graphs (a soft label row;
  GCleaner's ``simplex`` trigger features).
- ``unit``: ``sigmoid(raw)`` in ``[0, 1]`` regardless of the data (the original behaviour,
  kept to reproduce it).

``auto`` picks the first of ``onehot``, ``binary``, ``range`` that fits the clean features.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data


class FeatureKind(StrEnum):
    AUTO = "auto"
    ONEHOT = "onehot"
    BINARY = "binary"
    RANGE = "range"
    SIMPLEX = "simplex"
    UNIT = "unit"


def infer_kind(x: Tensor) -> FeatureKind:
    """``onehot``, ``binary`` or ``range`` for the ``[N, F]`` clean features ``x``."""
    binary = bool(((x == 0) | (x == 1)).all())
    if binary and bool((x.sum(dim=-1) == 1).all()):
        return FeatureKind.ONEHOT
    return FeatureKind.BINARY if binary else FeatureKind.RANGE


class FeatureDomain(nn.Module):
    """Projects raw generator outputs ``[..., F]`` into the clean features' domain.

    Args:
        kind: One of :class:`FeatureKind` other than ``auto`` (see :meth:`from_graphs`).
        low: ``[F]`` clean minimum of each feature.
        high: ``[F]`` clean maximum of each feature.
        seen: ``[F]`` bool, the labels a one-hot row may take (those present in the clean
            graphs); all ``True`` when omitted.
    """

    def __init__(
        self, kind: FeatureKind, low: Tensor, high: Tensor, seen: Tensor | None = None
    ) -> None:
        super().__init__()
        if kind is FeatureKind.AUTO:
            raise ValueError("resolve 'auto' with FeatureDomain.from_graphs")
        if low.shape != high.shape or low.dim() != 1:
            raise ValueError("low and high must be [F] tensors of the same shape")
        if seen is None:
            seen = torch.ones_like(low, dtype=torch.bool)
        if kind in (FeatureKind.ONEHOT, FeatureKind.SIMPLEX) and not bool(seen.any()):
            raise ValueError(f"a {kind.value} domain needs at least one label")
        self.kind = kind
        self.register_buffer("low", low.detach().float().clone())
        self.register_buffer("span", (high - low).detach().float().clone())
        self.register_buffer("seen", seen.detach().bool().clone())

    @classmethod
    def from_graphs(cls, graphs: Sequence[Data], kind: FeatureKind | str) -> FeatureDomain:
        """The domain of the node features of ``graphs`` (``auto`` infers the kind)."""
        x = torch.cat([g.x for g in graphs]).float()
        kind = FeatureKind(kind)
        if kind is FeatureKind.AUTO:
            kind = infer_kind(x)
        return cls(kind, x.min(dim=0).values, x.max(dim=0).values, x.ne(0).any(dim=0))

    def forward(self, raw: Tensor) -> Tensor:
        """``raw [..., F]`` -> features in the domain (hard values where the domain is
        discrete, with straight-through gradients)."""
        if self.kind is FeatureKind.ONEHOT:
            masked = raw.masked_fill(~self.seen, float("-inf"))
            soft = torch.softmax(masked, dim=-1)
            hard = F.one_hot(soft.argmax(dim=-1), raw.size(-1)).to(soft.dtype)
            return hard + (soft - soft.detach())  # exactly ``hard`` in value
        if self.kind is FeatureKind.SIMPLEX:
            return torch.softmax(raw.masked_fill(~self.seen, float("-inf")), dim=-1)
        soft = torch.sigmoid(raw)
        if self.kind is FeatureKind.BINARY:
            return (soft > 0.5).to(soft.dtype) + (soft - soft.detach())
        if self.kind is FeatureKind.RANGE:
            return self.low + self.span * soft
        return soft

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {"trigger_feature_domain": self.kind.value}
        if self.kind is FeatureKind.ONEHOT:
            info["trigger_feature_labels"] = int(self.seen.sum())
        return info
