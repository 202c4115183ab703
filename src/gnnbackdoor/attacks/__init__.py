"""Backdoor attacks: their bases and registry. Importing this package registers them all."""

from gnnbackdoor.attacks.base import ATTACKS, Attack, GraphAttack, LinkAttack, PoisonResult

__all__ = ["ATTACKS", "Attack", "GraphAttack", "LinkAttack", "PoisonResult"]
