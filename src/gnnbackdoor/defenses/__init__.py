"""Defenses: model repair, input shields and training defenses. Importing this package
registers them all: every module in this folder is imported, so adding a component means
adding a file."""

import importlib
import pkgutil

from gnnbackdoor.defenses.base import (
    DEFENSES,
    Defense,
    InputShield,
    ModelRepairDefense,
    PredictFn,
    RepairResult,
    ShieldResult,
    TrainingDefense,
    TrainingDefenseResult,
)

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

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
