"""Defense bases and registry, split by kind as in TrojanZoo:

* :class:`ModelRepairDefense` purifies a model with a small clean set (GCleaner):
  ``repair(model, clean_graphs, ctx) -> RepairResult`` (the model, figures about the repair,
  and graph sets for the pipeline to score).
* :class:`InputShield` wraps only a prediction function (GraphProt):
  ``predict(predict_fn, graphs) -> ShieldResult`` (labels with per-graph diagnostics); no
  gradients, weights or training data.
* :class:`TrainingDefense` replaces the victim's training on the (possibly poisoned)
  training set (ABL; the detectors ED and XGBD, which filter it and retrain):
  ``train(graphs_train, graphs_val, ctx) -> TrainingDefenseResult`` (the model, figures, and
  which training graphs it kept or flagged).

Both return values (:mod:`gnnbackdoor.contracts.results`); the pipeline computes every
metric from them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.contracts.results import RepairResult, ShieldResult, TrainingDefenseResult
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.registry import Registry
from gnnbackdoor.settings import OpenFraction, Settings, as_dict

if TYPE_CHECKING:
    from gnnbackdoor.contracts.context import GraphContext
    from gnnbackdoor.datasets.base import DataLocation
    from gnnbackdoor.models.base import GraphClassifier

__all__ = [
    "DEFENSES",
    "Defense",
    "InputShield",
    "ModelRepairDefense",
    "PredictFn",
    "RepairResult",
    "ShieldResult",
    "TrainingDefense",
    "TrainingDefenseResult",
]

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
class Defense(Settings, ABC):
    """Common base; fields declare their ranges and choices, validated on construction."""

    task: ClassVar[str] = "graph"
    reference: ClassVar[str] = ""
    registered_name: ClassVar[str]

    def params(self) -> dict[str, Any]:
        """The defense's parameters for the record, as plain JSON (nested sections as dicts)."""
        return as_dict(self)

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

    holding_rate: OpenFraction = 0.03

    def split_defender_data(
        self,
        test: Sequence[Data],
        generator: torch.Generator,
        dataset_size: int | None = None,
        location: DataLocation | None = None,
    ) -> tuple[list[int], list[int]]:
        """Positions in ``test`` for the defender's clean set and for evaluation (disjoint),
        drawn from ``generator`` (the defender-split stage's).

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
    ) -> RepairResult:
        """The purified model (``model`` itself may be modified or copied), with figures about
        the repair and any graph sets the pipeline should score. Draws only from
        ``ctx.generator`` (the defense stage's) and, for module initialisation and dropout,
        torch's global generator, which the pipeline seeds for the stage."""


@runtime_checkable
class UnlearningControls(Protocol):
    """A repair whose unlearning can be rerun with other triggered copies of the defender's
    graphs (GCleaner, issue 20): the pipeline's measurement-only controls. With the attack's
    true trigger (the *oracle*) or none (``triggered_graphs=None``), the same unlearning
    says how much of the removal the repair's own recovered trigger earns. The defense only
    sees the attack's trigger here, after its repair, and nothing it returns depends on it.
    """

    def unlearn_control(
        self,
        model: GraphClassifier,
        clean_graphs: Sequence[Data],
        triggered_graphs: Sequence[Data] | None,
        ctx: GraphContext,
    ) -> GraphClassifier:
        """``model`` (a copy of the one handed to the repair) unlearned on
        ``(clean_graphs[i], triggered_graphs[i])`` pairs, or on untriggered copies."""
        ...


@dataclass
class InputShield(Defense):
    """A test-time shield in front of a black-box prediction function."""

    @abstractmethod
    def predict(self, predict_fn: PredictFn, graphs: Sequence[Data]) -> ShieldResult:
        """Shielded labels for ``graphs``."""


@dataclass
class TrainingDefense(Defense):
    """Trains the model in place of the victim's own training, on the training set as the
    attacker left it (poisoned graphs relabelled, at unknown positions): anti-backdoor
    learning, or a detector that filters the set and retrains a fresh victim.

    The graph pipeline hands it the training and validation graphs the backdoored victim
    was trained on, and scores the returned model like a repaired one (``defended_acc``,
    ``defended_asr``, ...); with ``kept`` or ``flagged`` it also scores the detection against
    the attack's poisoned graphs (``detector_precision``, ``detector_recall``,
    ``num_flagged``).
    """

    @abstractmethod
    def train(
        self,
        graphs_train: Sequence[Data],
        graphs_val: Sequence[Data],
        ctx: GraphContext,
        victim: GraphClassifier | None = None,
    ) -> TrainingDefenseResult:
        """The defended model.

        Args:
            graphs_train: The training graphs (not modified); positions in the result index
                this list.
            graphs_val: Validation graphs for model selection (the ones the victim used).
            ctx: The run: its model spec and training settings (``ctx.train_model``,
                ``ctx.build_model``) and the defense stage's generator (``ctx.generator``).
                ``ctx.clean_model`` is the pipeline's and must not be used.
            victim: A copy of the model the run trained on ``graphs_train`` with the run's
                settings, which a detector may use as its helper model instead of training
                one (``None``: train one).

        Draws only from ``ctx.generator`` and, for module initialisation and dropout,
        torch's global generator, which the pipeline seeds for the stage."""


DEFENSES: Registry[type[Defense]] = Registry("defense")
