"""Typed configuration: ``--set key=value`` overrides and YAML values routed to dataclass
sections and converted by the one converter (:mod:`gnnbackdoor.settings`, pydantic).

Sections are ``data``, ``train``, ``model``, ``attack`` and ``defense``; each is a dataclass
whose init fields are the settable keys, with declared types, ranges and closed choices
(enums). A component with many settings nests sections (GCleaner: ``defense.recovery.lr``,
``defense.unlearning.lr``). A key may start with its section (``attack.m=3``) or not
(``m=3``, ``recovery.lr=0.01``), in which case it must name a key of exactly one section in
play. An unknown key lists the valid keys at its level; a bad value gives one line naming
the key, the value and the accepted range or choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from gnnbackdoor.errors import ConfigError
from gnnbackdoor.settings import (
    NonNegativeInt,
    OpenFraction,
    Settings,
    as_dict,
    build,
    check_value,
    coerce_field,
    field_types,
    is_section,
    valid_keys,
)

__all__ = [
    "SECTIONS",
    "DataConfig",
    "as_dict",
    "build",
    "check_value",
    "convert",
    "parse_assignments",
    "split_overrides",
]

SECTIONS = ("data", "train", "model", "attack", "defense")

#: ``val_fraction``: 0 (no validation split) up to, not including, 1.
_ValFraction = Annotated[float, Field(ge=0, lt=1)]


@dataclass
class DataConfig(Settings):
    """How data are split.

    Attributes:
        train_fraction: Graph classification: fraction of graphs for training, in (0, 1)
            (GCleaner 0.8, GraphProt 2/3); the rest is the test split.
        val_fraction: Graph classification: fraction of the training graphs held out for early
            stopping, in [0, 1) (0: no validation split).
        link_val: Link prediction: fraction of edges for validation, in (0, 1)
            (Link-Backdoor: 0.05).
        link_test: Link prediction: fraction of edges for testing, in (0, 1) (Link-Backdoor:
            0.10); ``link_val + link_test`` must stay below 1.
        node_attributes: TU datasets that ship continuous node attributes (AIDS, ENZYMES,
            DHFR, PROTEINS): append them, standardised per column, to the one-hot node labels
            (PyG's ``use_node_attr``). ENZYMES's 18 attributes are what its published
            accuracies use.
        cv_folds: Graph classification: 0 (default) splits by ``train_fraction``; ``k >= 2``
            makes the test split fold ``cv_fold`` of a stratified ``k``-fold partition
            (scikit-learn's ``StratifiedKFold``, shuffled with the run's seed), the protocol
            of published 10-fold figures (Xu et al. 2019; Errica et al. 2020). Run every fold
            (``--set data.cv_fold=0`` ... ``k-1``, or a sweep grid) and average them.
        cv_fold: Which fold is the test split when ``cv_folds >= 2`` (0-based).
    """

    train_fraction: OpenFraction = 0.8
    val_fraction: _ValFraction = 0.1
    link_val: OpenFraction = 0.05
    link_test: OpenFraction = 0.10
    node_attributes: bool = False
    cv_folds: NonNegativeInt = 0
    cv_fold: NonNegativeInt = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cv_folds == 1:
            raise ConfigError(f"data.cv_folds must be 0 (off) or at least 2, got {self.cv_folds}")
        if self.cv_folds and not self.cv_fold < self.cv_folds:
            raise ConfigError(f"data.cv_fold must be in 0..{self.cv_folds - 1}, got {self.cv_fold}")
        if not self.cv_folds and self.cv_fold:
            raise ConfigError("data.cv_fold needs data.cv_folds >= 2")
        if self.link_val + self.link_test >= 1:
            raise ConfigError(
                f"data.link_val + data.link_test must be below 1, got "
                f"{self.link_val} + {self.link_test}"
            )


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}``; one-line error on a bad item."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def convert(text: str, annotation: Any, key: str) -> Any:
    """Parse ``text`` (or a YAML value) as a value of type ``annotation`` through the one
    converter."""
    return check_value(annotation, text, key)


def _lookup(cls: type, path: list[str]) -> tuple[type, str] | None:
    """The dataclass holding the last key of ``path`` (descending nested sections) and that
    key, or ``None`` when the path names no key of ``cls``."""
    for part in path[:-1]:
        annotation = field_types(cls).get(part)
        if not is_section(annotation):
            return None
        cls = annotation
    return (cls, path[-1]) if path[-1] in field_types(cls) else None


def _unknown(key: str, section: str, cls: type, path: list[str]) -> ConfigError:
    """The error for a key that ``cls`` lacks: lists the valid keys at the deepest level the
    path reached."""
    level, where = cls, section
    for part in path[:-1]:
        annotation = field_types(level).get(part)
        if not is_section(annotation):
            break
        level, where = annotation, f"{where}.{part}"
    return ConfigError(f"--set {key}: unknown key; valid keys under {where}: {valid_keys(level)}")


def _insert(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def split_overrides(
    overrides: dict[str, Any], sections: dict[str, type | None]
) -> dict[str, dict[str, Any]]:
    """Route each override to its section and convert it to the field's type.

    Args:
        overrides: ``{"attack.m": "3", "patience": "50", "defense.recovery.lr": "0.01"}``;
            values are ``--set`` text or YAML values.
        sections: Section name -> dataclass (``None`` when absent from this run).

    Returns:
        ``{section: {field: value}}`` for every section in ``sections``; a nested section's
        keys come as a dict under its name (``{"recovery": {"lr": 0.01}}``).

    Raises:
        ConfigError: unknown or ambiguous key, or a value of the wrong type or out of range.
    """
    present = {name: cls for name, cls in sections.items() if cls is not None}
    routed: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, value in overrides.items():
        parts = key.split(".")
        if any(not part for part in parts):
            raise ConfigError(f"--set {key}: empty key segment")
        if parts[0] in SECTIONS or parts[0] in sections:
            section, path = parts[0], parts[1:]
            if section not in present:
                names = ", ".join(sorted(present))
                raise ConfigError(f"--set {key}: no section {section!r} in this run ({names})")
            if not path:
                raise ConfigError(f"--set {key}: name a key, e.g. {section}.<key>")
            candidates = [section] if _lookup(present[section], path) else []
            if not candidates:
                raise _unknown(key, section, present[section], path)
        else:
            path = parts
            candidates = [s for s, cls in present.items() if _lookup(cls, path)]
            if not candidates:
                valid = "; ".join(f"{s}: {valid_keys(cls)}" for s, cls in present.items())
                raise ConfigError(f"--set {key}: unknown key; valid keys: {valid}")
        if len(candidates) > 1:
            raise ConfigError(
                f"--set {key} is ambiguous; say one of "
                + ", ".join(f"{s}.{'.'.join(path)}" for s in candidates)
            )
        section = candidates[0]
        holder, name = _lookup(present[section], path)  # type: ignore[misc]
        typed = coerce_field(holder, name, value, ".".join([section, *path]))
        _insert(routed[section], path, typed)
    return routed
