"""gnnbackdoor: backdoor attacks, defenses and measurements for graph neural networks.

The package follows the flow of an experiment: ``datasets`` -> ``models`` -> ``attacks`` ->
``defenses`` -> ``metrics`` -> ``experiments``; ``cli`` and ``service`` sit on top.
"""

__version__ = "0.1.0"
