"""Attack bases and registry.

Attacks follow the estimator contract (STYLE.md): the constructor (a dataclass) only stores
parameters; ``fit`` learns the trigger from the context; ``poison`` makes poisoned training
data; ``activate`` embeds the trigger into test inputs and returns them with the trigger's
positions (:class:`~gnnbackdoor.contracts.results.TriggeredGraphs`); ``backdoor`` produces
the backdoored model (poison then train, unless an attack needs its own loop: GTA's bi-level
optimisation, Link-Backdoor's re-optimised triggers). Learned state ends with ``_``.

The task pipelines in :mod:`gnnbackdoor.experiments.pipelines` call these methods and compute
every metric; an attack never evaluates itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.registry import Registry
from gnnbackdoor.settings import Fraction, NonNegativeInt, Settings, as_dict

if TYPE_CHECKING:
    from gnnbackdoor.contracts.context import GraphContext, LinkContext
    from gnnbackdoor.contracts.results import TriggeredGraphs
    from gnnbackdoor.models.base import GraphClassifier, LinkPredictor


@dataclass
class Attack(Settings, ABC):
    """Common base: ``task`` says which pipeline runs it; ``reference`` names the paper.
    Fields declare their ranges and choices; they are validated on construction."""

    task: ClassVar[str]
    reference: ClassVar[str] = ""
    registered_name: ClassVar[str]

    def params(self) -> dict[str, Any]:
        """The attack's parameters (its dataclass fields) for the record, as plain JSON."""
        return as_dict(self)

    def describe(self) -> dict[str, Any]:
        """What the fitted attack did, for the record (trigger size, positions, ...)."""
        return {}


@dataclass
class PoisonResult:
    """Poisoned training data and which items were poisoned.

    Attributes:
        graphs: The training graphs, poisoned ones replaced by triggered, relabelled copies.
        poisoned_index: Positions (into the training list) that were poisoned.
    """

    graphs: list[Data]
    poisoned_index: list[int] = field(default_factory=list)


@dataclass
class GraphAttack(Attack):
    """Backdoor attack on graph classification by trigger-subgraph injection.

    Attributes:
        target_class: The attacker's label for triggered graphs.
        injection_ratio: Fraction of training graphs poisoned, in (0, 1].
    """

    target_class: NonNegativeInt = 0
    injection_ratio: Fraction = 0.1
    task: ClassVar[str] = "graph"

    @abstractmethod
    def fit(self, ctx: GraphContext) -> GraphAttack:
        """Learn or draw the trigger from the training data (and, if needed, a clean model)."""

    @abstractmethod
    def poison(self, graphs: Sequence[Data]) -> PoisonResult:
        """Embed triggers into ``injection_ratio`` of ``graphs`` and relabel them."""

    @abstractmethod
    def activate(self, graphs: Sequence[Data]) -> TriggeredGraphs:
        """Triggered copies of ``graphs`` with the trigger's nodes in each (never modifies the
        inputs; labels unchanged). Draws only from the generator handed to ``fit``."""

    def backdoor(self, ctx: GraphContext) -> GraphClassifier:
        """The backdoored model: by default a fresh victim trained on ``poison(train)``.
        An override records what it trains on with :meth:`_record_training_set`."""
        poisoned = self.poison(ctx.split.train)
        self.poisoned_index_ = poisoned.poisoned_index
        self._record_training_set(poisoned.graphs, ctx.split.val)
        return ctx.train_new_model(poisoned.graphs, desc="backdoored")

    def _record_training_set(self, train: Sequence[Data], val: Sequence[Data]) -> None:
        """Keep the graphs the backdoored victim is trained and validated on (read back by
        :meth:`training_set`); call it in ``backdoor`` after ``poisoned_index_`` is set."""
        self.trained_on_ = list(train)
        self.validated_on_ = list(val)

    def training_set(self) -> tuple[PoisonResult, list[Data]] | None:
        """After :meth:`backdoor`: the training graphs the backdoored victim was trained on
        (poisoned ones in place, ``poisoned_index`` naming them) and its validation graphs,
        for training-time defenses (:class:`~gnnbackdoor.defenses.base.TrainingDefense`);
        ``None`` before, or for an attack whose ``backdoor`` does not record them."""
        graphs = getattr(self, "trained_on_", None)
        if graphs is None:
            return None
        index = list(getattr(self, "poisoned_index_", []))
        return PoisonResult(list(graphs), index), list(self.validated_on_)


@dataclass
class LinkAttack(Attack):
    """Backdoor attack on link prediction.

    The pipeline asks for held-out target links (``test_targets``), the backdoored model
    (``backdoor``) and triggered graphs (``activate``), then measures everything itself.
    """

    task: ClassVar[str] = "link"

    @abstractmethod
    def fit(self, ctx: LinkContext) -> LinkAttack:
        """Choose target links and initial triggers (white-box: with ``ctx.clean_model``)."""

    @abstractmethod
    def backdoor(self, ctx: LinkContext) -> LinkPredictor:
        """Train and return the backdoored model on poisoned training data."""

    @abstractmethod
    def test_targets(self, ctx: LinkContext) -> Tensor:
        """Held-out target links ``[2, T]`` (non-edges, never used in poisoning)."""

    @abstractmethod
    def activate(self, graph: Data, targets: Tensor) -> Data:
        """A copy of ``graph`` with a trigger attached to each target link in ``targets``
        (``[2, T]``); original node ids are kept, injected nodes are appended."""


ATTACKS: Registry[type[Attack]] = Registry("attack")
