"""What attacks, defenses and pipelines exchange: the run contexts handed to components and
the values components return. Sits between ``models/`` and ``attacks/``: it imports only
``datasets/``, ``models/`` and ``utils/``, and everything from ``attacks/`` up may import it."""

from gnnbackdoor.contracts.context import GraphContext, GraphTrainer, LinkContext, LinkTrainer
from gnnbackdoor.contracts.results import (
    Probe,
    RepairResult,
    ScoredModel,
    ShieldResult,
    TriggeredGraphs,
)

__all__ = [
    "GraphContext",
    "GraphTrainer",
    "LinkContext",
    "LinkTrainer",
    "Probe",
    "RepairResult",
    "ScoredModel",
    "ShieldResult",
    "TriggeredGraphs",
]
