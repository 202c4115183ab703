"""Defenses: model repair and input shields. Importing this package registers them all."""

from gnnbackdoor.defenses.base import (
    DEFENSES,
    Defense,
    InputShield,
    ModelRepairDefense,
    PredictFn,
    ShieldResult,
)

__all__ = ["DEFENSES", "Defense", "InputShield", "ModelRepairDefense", "PredictFn", "ShieldResult"]
