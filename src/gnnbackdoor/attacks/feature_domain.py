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
  (straight-through estimator, as for the trigger's edges). Two settings keep the learned
  choice inside the data's distribution (issue 14: every trigger node had taken one atom
  type found on 0.01 % of clean nodes, so one trigger node alone was the backdoor):
  ``min_share`` admits only labels carried by at least that share of clean nodes, and
  ``prior`` adds ``prior * log(share)`` to the raw output before the argmax, a
  frequency-weighted choice (a label wins against a ten times more common one only by a
  margin of ``prior * log(10)`` in the raw output).
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
        log_prior: ``[F]`` added to the raw output of a one-hot domain before its argmax
            (``prior * log(share)`` from :meth:`from_graphs`); zeros when omitted.
    """

    def __init__(
        self,
        kind: FeatureKind,
        low: Tensor,
        high: Tensor,
        seen: Tensor | None = None,
        log_prior: Tensor | None = None,
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
        if log_prior is None:
            log_prior = torch.zeros_like(low)
        self.register_buffer("log_prior", log_prior.detach().float().clone())

    @classmethod
    def from_graphs(
        cls,
        graphs: Sequence[Data],
        kind: FeatureKind | str,
        min_share: float = 0.0,
        prior: float = 0.0,
    ) -> FeatureDomain:
        """The domain of the node features of ``graphs`` (``auto`` infers the kind).

        Args:
            graphs: The clean graphs (``x`` ``[N_i, F]`` each).
            kind: The domain kind, or ``auto``.
            min_share: One-hot and simplex domains: a label is allowed only when at least
                this share of the clean nodes carry it (the most common label always is);
                0 allows every label present.
            prior: One-hot domains: weight of ``log(share)`` added to the raw output before
                the argmax (0: none).
        """
        x = torch.cat([g.x for g in graphs]).float()
        kind = FeatureKind(kind)
        if kind is FeatureKind.AUTO:
            kind = infer_kind(x)
        seen = x.ne(0).any(dim=0)
        share = x.ne(0).float().mean(dim=0)
        if min_share > 0:
            frequent = share >= min_share
            frequent[share.argmax()] = True
            seen = seen & frequent
        log_prior = None
        if prior and kind is FeatureKind.ONEHOT:
            log_prior = prior * torch.where(seen, share.clamp_min(1e-12).log(), 0.0)
        return cls(kind, x.min(dim=0).values, x.max(dim=0).values, seen, log_prior)

    def forward(self, raw: Tensor) -> Tensor:
        """``raw [..., F]`` -> features in the domain (hard values where the domain is
        discrete, with straight-through gradients)."""
        if self.kind is FeatureKind.ONEHOT:
            masked = (raw + self.log_prior).masked_fill(~self.seen, float("-inf"))
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
        """The domain kind and, for one-hot rows, how many labels a trigger node may take."""
        info: dict[str, object] = {"trigger_feature_domain": self.kind.value}
        if self.kind is FeatureKind.ONEHOT:
            info["trigger_feature_labels"] = int(self.seen.sum())
        return info


def feature_row_share(rows: Tensor, clean_x: Tensor) -> float:
    """Mean over ``rows`` ``[R, F]`` of the share of clean nodes (rows of ``clean_x``
    ``[N, F]``) whose feature row equals that row exactly: how common a trigger node's features
    are in the clean data (0: no clean node looks like a trigger node; one-hot atom types:
    the trigger type's frequency). NaN without rows or clean nodes."""
    if rows.numel() == 0 or clean_x.size(0) == 0:
        return float("nan")
    unique, counts = torch.unique(clean_x.float() + 0.0, dim=0, return_counts=True)
    # exact row equality through each row's bytes (a dense [R, U] comparison needs
    # gigabytes on continuous features, where nearly every clean row is unique)
    count_of = {
        row.numpy().tobytes(): int(c) for row, c in zip(unique, counts.tolist(), strict=True)
    }
    hits = [count_of.get(row.numpy().tobytes(), 0) for row in rows.detach().float() + 0.0]
    return sum(hits) / (len(hits) * clean_x.size(0))
