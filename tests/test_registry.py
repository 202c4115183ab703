"""The registries: case-insensitive lookup, one-line errors listing choices, and a meta-test
that every registered component has a test module that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.datasets import DATASETS
from gnnbackdoor.defenses import DEFENSES
from gnnbackdoor.errors import UnknownNameError
from gnnbackdoor.models import MODELS
from gnnbackdoor.registry import Registry

TESTS = Path(__file__).resolve().parent


def test_lookup_ignores_case_dash_and_underscore():
    registry: Registry[type] = Registry("widget")

    @registry.register("Cora_ML")
    class Widget:
        pass

    assert registry.get("cora-ml") is Widget
    assert registry.get("CORA_ML") is Widget
    assert registry.canonical("cora_ml") == "Cora_ML"
    assert "cora-ml" in registry
    assert Widget.registered_name == "Cora_ML"


def test_unknown_name_lists_choices_on_one_line():
    with pytest.raises(UnknownNameError) as info:
        MODELS.get("gcn2")
    message = str(info.value)
    assert "\n" not in message
    assert "unknown model 'gcn2'" in message
    for name in ("gae", "gin", "sage"):
        assert name in message


def test_registering_two_classes_under_one_name_fails():
    registry: Registry[type] = Registry("widget")
    registry.register("a")(type("A", (), {}))
    with pytest.raises(ValueError):
        registry.register("A")(type("B", (), {}))


def test_issue_names_are_registered():
    for name in ("gae", "vgae", "gic", "arga", "arvga", "gcn", "gat", "gin", "sage"):
        assert name in MODELS
    for name in (
        "Cora",
        "CiteSeer",
        "PubMed",
        "Cora_ML",
        "CS",
        "AIDS",
        "ENZYMES",
        "DHFR",
        "NCI1",
        "PROTEINS",
        "COLLAB",
        "Fingerprint",
        "MUTAG",
        "Bitcoin",
    ):
        assert name in DATASETS


@pytest.mark.parametrize(
    ("registry", "folder"),
    [(MODELS, "models"), (ATTACKS, "attacks"), (DEFENSES, "defenses"), (DATASETS, "datasets")],
)
def test_every_registered_component_is_named_in_a_test(registry, folder):
    """Meta-test: a component without any test mentioning its registered name fails here."""
    text = "\n".join(p.read_text() for p in (TESTS / folder).rglob("test_*.py")).lower()
    missing = [
        name
        for name, _ in registry.items()
        if f'"{name.lower()}"' not in text and not name.startswith("test-")  # test doubles
    ]
    assert not missing, f"no test under tests/{folder} names {missing}"
