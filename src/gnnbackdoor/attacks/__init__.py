"""Backdoor attacks: their bases and registry. Importing this package registers them all:
every module in this folder is imported, so adding a component means adding a file."""

import importlib
import pkgutil

from gnnbackdoor.attacks.base import ATTACKS, Attack, GraphAttack, LinkAttack, PoisonResult

__all__ = ["ATTACKS", "Attack", "GraphAttack", "LinkAttack", "PoisonResult"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
