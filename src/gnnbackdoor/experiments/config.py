"""Typed configuration: ``--set key=value`` overrides applied to dataclass sections.

Sections are ``data``, ``train``, ``model``, ``attack`` and ``defense``; each is a dataclass
whose fields are the settable keys. A key may be dotted (``attack.m=3``) or bare (``m=3``),
in which case it must name a field of exactly one section in play.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

from gnnbackdoor.errors import ConfigError

SECTIONS = ("data", "train", "model", "attack", "defense")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass
class DataConfig:
    """How data are split.

    Attributes:
        train_fraction: Graph classification: fraction of graphs for training (GCleaner 0.8,
            GraphProt 2/3); the rest is the test split.
        val_fraction: Graph classification: fraction of the training graphs held out for early
            stopping.
        link_val: Link prediction: fraction of edges for validation (Link-Backdoor: 0.05).
        link_test: Link prediction: fraction of edges for testing (Link-Backdoor: 0.10).
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

    train_fraction: float = 0.8
    val_fraction: float = 0.1
    link_val: float = 0.05
    link_test: float = 0.10
    node_attributes: bool = False
    cv_folds: int = 0
    cv_fold: int = 0

    def __post_init__(self) -> None:
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ConfigError(f"data.cv_folds must be 0 (off) or at least 2, got {self.cv_folds}")
        if self.cv_folds and not 0 <= self.cv_fold < self.cv_folds:
            raise ConfigError(f"data.cv_fold must be in 0..{self.cv_folds - 1}, got {self.cv_fold}")
        if not self.cv_folds and self.cv_fold:
            raise ConfigError("data.cv_fold needs data.cv_folds >= 2")


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}``; one-line error on a bad item."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def convert(text: str, annotation: Any, key: str) -> Any:
    """Parse ``text`` as a value of type ``annotation`` (bool, int, float, str, optional,
    list of those)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.lower() in {"none", "null", ""} and len(options) < len(typing.get_args(annotation)):
            return None
        errors = []
        for option in options:
            try:
                return convert(text, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: cannot parse {text!r}")
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(annotation) or (str,)
        parts = [p for p in text.replace(",", " ").split() if p]
        return [convert(p, inner, key) for p in parts]
    if annotation is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{key} expects true or false, got {text!r}")
    if annotation in (int, float):
        try:
            return annotation(text)
        except ValueError:
            raise ConfigError(f"{key} expects {annotation.__name__}, got {text!r}") from None
    if annotation is str:
        return text
    raise ConfigError(f"{key} cannot be set from the command line")


def split_overrides(
    overrides: dict[str, str], sections: dict[str, type | None]
) -> dict[str, dict[str, Any]]:
    """Route each override to its section and convert it to the field's type.

    Args:
        overrides: ``{"attack.m": "3", "patience": "50"}``.
        sections: Section name -> dataclass (``None`` when absent from this run).

    Returns:
        ``{section: {field: value}}`` for every section in ``sections``.

    Raises:
        ConfigError: unknown or ambiguous key, or a value of the wrong type.
    """
    types_by_section = {
        name: _field_types(cls) for name, cls in sections.items() if cls is not None
    }
    routed: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, text in overrides.items():
        section, _, name = key.rpartition(".")
        if section:
            if section not in types_by_section:
                present = ", ".join(sorted(types_by_section))
                raise ConfigError(f"--set {key}: no section {section!r} in this run ({present})")
            candidates = [section] if name in types_by_section[section] else []
        else:
            candidates = [s for s, fields in types_by_section.items() if name in fields]
        if not candidates:
            scope = types_by_section.get(section) if section else None
            valid = (
                sorted(scope)
                if scope is not None
                else sorted(f"{s}.{f}" for s, fields in types_by_section.items() for f in fields)
            )
            raise ConfigError(f"--set {key}: unknown key; valid keys: {', '.join(valid)}")
        if len(candidates) > 1:
            raise ConfigError(
                f"--set {key} is ambiguous; say one of "
                + ", ".join(f"{s}.{name}" for s in candidates)
            )
        target = candidates[0]
        routed[target][name] = convert(text, types_by_section[target][name], key)
    return routed


def build(cls: type, values: dict[str, Any], what: str) -> Any:
    """Instantiate dataclass ``cls`` with ``values``; its validation errors become one line."""
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {what} settings: {error}") from None


def as_dict(obj: Any) -> dict[str, Any]:
    """The init fields of a dataclass instance, for records."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
