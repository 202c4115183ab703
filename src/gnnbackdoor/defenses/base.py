"""Defense bases and registry, split by kind as in TrojanZoo:

* :class:`ModelRepairDefense` purifies a model with a small clean set (GCleaner):
  ``repair(model, clean_graphs, ctx) -> model``.
* :class:`InputShield` wraps only a prediction function (GraphProt):
  ``predict(predict_fn, graphs) -> ShieldResult``; no gradients, weights or training data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.errors import ConfigError
from gnnbackdoor.registry import Registry

if TYPE_CHECKING:
    from gnnbackdoor.datasets.base import DataLocation
    from gnnbackdoor.experiments.context import GraphContext
    from gnnbackdoor.models.base import GraphClassifier

#: A black-box model: a list of graphs in, a ``[B]`` tensor of labels out.
PredictFn = Callable[[Sequence[Data]], Tensor]


def holding_count(rate: float, size: int, basis: str) -> int:
    """``round(rate * size)`` defender graphs; a rate that rounds to 0 is refused.

    Raises:
        ConfigError: ``round(rate * size) == 0`` (the message names ``size``)."""
    count = round(rate * size)
    if count == 0:
        raise ConfigError(
            f"defense.holding_rate={rate} gives 0 defender graphs of the {size} {basis} "
            f"graphs; use at least {0.5 / max(size, 1):.2g}"
        )
    return count


@dataclass
class Defense(ABC):
    task: ClassVar[str] = "graph"
    reference: ClassVar[str] = ""
    registered_name: ClassVar[str]

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> dict[str, Any]:
        """Figures about what the defense did (added to the record's metrics)."""
        return {}


@dataclass
class ModelRepairDefense(Defense):
    """Purifies a (possibly backdoored) model using a small set of clean graphs.

    Attributes:
        holding_rate: Fraction of the test split handed to the defender as clean data, in
            (0, 1); those graphs are then excluded from every evaluation.
    """

    holding_rate: float = 0.03

    def __post_init__(self) -> None:
        if not 0 < self.holding_rate < 1:
            raise ConfigError(f"holding_rate must be in (0, 1), got {self.holding_rate}")

    def split_defender_data(
        self,
        test: Sequence[Data],
        generator: torch.Generator,
        dataset_size: int | None = None,
        location: DataLocation | None = None,
    ) -> tuple[list[int], list[int]]:
        """Positions in ``test`` for the defender's clean set and for evaluation (disjoint).

        ``dataset_size`` (the whole dataset's graph count) is given by the pipeline for
        defenses whose holding rate is a share of the dataset (GCleaner); unused here."""
        count = holding_count(self.holding_rate, len(test), "test")
        if count >= len(test):
            raise ConfigError(
                f"defense.holding_rate={self.holding_rate} gives {count} defender graphs, "
                f"leaving none of the {len(test)} test graphs to evaluate"
            )
        order = torch.randperm(len(test), generator=generator).tolist()
        return sorted(order[:count]), sorted(order[count:])

    @abstractmethod
    def repair(
        self, model: GraphClassifier, clean_graphs: Sequence[Data], ctx: GraphContext
    ) -> GraphClassifier:
        """A purified model (``model`` itself may be modified or copied)."""


@dataclass
class ShieldResult:
    """What a shield returns for a batch of graphs.

    Attributes:
        labels: Final labels ``[B]``.
        details: One dict per graph (votes, removed nodes, ...), JSON-serialisable.
        queries: Number of calls made to the prediction function.
        graphs_queried: Number of (sub)graphs sent to it in total.
    """

    labels: Tensor
    details: list[dict[str, Any]] = field(default_factory=list)
    queries: int = 0
    graphs_queried: int = 0


@dataclass
class InputShield(Defense):
    """A test-time shield in front of a black-box prediction function."""

    @abstractmethod
    def predict(self, predict_fn: PredictFn, graphs: Sequence[Data]) -> ShieldResult:
        """Shielded labels for ``graphs``."""


DEFENSES: Registry[type[Defense]] = Registry("defense")
