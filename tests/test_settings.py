"""Declared ranges and choices of every setting (issue 15, item 6): a walk over every
registry (models, attacks, defenses, training configs, the data config) that tries a value out
of range for every numeric field (nested sections included) and a wrong choice for every
enum and boolean, through the converter and by direct construction; and the command line's
numeric flags."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

import pytest

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.cli import main
from gnnbackdoor.datasets import DATASETS
from gnnbackdoor.defenses import DEFENSES
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.experiments.config import DataConfig, as_dict, build
from gnnbackdoor.experiments.pipelines import TASKS
from gnnbackdoor.models import MODELS
from gnnbackdoor.settings import base_type, bounds_of, field_types

#: Free-text settings: registry names checked against their registry, not a range.
FREE_TEXT = {"auxiliary_dataset", "surrogate"}


def _components() -> list[tuple[str, type]]:
    found = [("data", DataConfig)]
    found += [(f"train[{name}]", cls.train_config_cls) for name, cls in TASKS.items()]
    for section, registry in (("model", MODELS), ("attack", ATTACKS), ("defense", DEFENSES)):
        found += [(f"{section}[{name}]", cls) for name, cls in registry.items()]
    return found


def _fields(cls: type, path: tuple[str, ...] = ()):
    """``(path, annotation)`` of every leaf setting, descending into nested sections."""
    for name, annotation in field_types(cls).items():
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            yield from _fields(annotation, (*path, name))
        else:
            yield (*path, name), annotation


def _bad_values(key: str, annotation: Any) -> list[Any]:
    kind = base_type(annotation)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return ["not-a-choice"]
    if kind is bool:
        return ["maybe"]
    if kind in (int, float):
        bounds = bounds_of(annotation)
        assert bounds, f"{key} declares no range"
        bad: list[Any] = []
        if "gt" in bounds:
            bad.append(bounds["gt"])
        if "ge" in bounds:
            bad.append(bounds["ge"] - 1 if kind is int else bounds["ge"] - 0.5)
        if "lt" in bounds:
            bad.append(bounds["lt"])
        if "le" in bounds:
            bad.append(bounds["le"] + 1 if kind is int else bounds["le"] + 0.5)
        if kind is float:
            bad += [math.nan, math.inf]
        else:
            bad.append(1.5)
        return bad
    assert kind is str and key.split(".")[-1] in FREE_TEXT, f"{key}: {annotation} has no check"
    return []


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {path[-1]: value}
    for part in reversed(path[:-1]):
        tree = {part: tree}
    return tree


CASES = [
    pytest.param(cls, path, bad, id=f"{label}.{'.'.join(path)}={bad}")
    for label, cls in _components()
    for path, annotation in _fields(cls)
    for bad in _bad_values(f"{label}.{'.'.join(path)}", annotation)
]


def test_the_walk_covers_every_registry():
    labels = {label.split("[")[0] for label, _ in _components()}
    assert labels == {"data", "train", "model", "attack", "defense"}
    assert len(CASES) > 200
    # datasets have no settings of their own (data.* covers how they are split)
    for name, cls in DATASETS.items():
        assert not dataclasses.is_dataclass(cls), name


@pytest.mark.parametrize(("cls", "path", "bad"), CASES)
def test_out_of_range_values_are_one_line_errors(cls, path, bad):
    key = "section." + ".".join(path)
    text = str(bad).lower() if isinstance(bad, bool) else str(bad)
    for value in (text, bad):  # as --set text and as a YAML/Python value
        with pytest.raises(ConfigError) as info:
            build(cls, _nest(path, value), "section")
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{key}=") and "expected" in message, message
    with pytest.raises(ConfigError) as info:  # built directly, the same check
        cls(**_nest(path, bad))
    assert "\n" not in str(info.value) and ".".join(path) in str(info.value)


@pytest.mark.parametrize(("label", "cls"), _components(), ids=[c[0] for c in _components()])
def test_defaults_are_valid_and_records_stay_plain_json(label, cls):
    plain = as_dict(cls())

    def check(value):
        if isinstance(value, dict):
            return all(check(v) for v in value.values())
        return type(value) in (str, int, float, bool, type(None), list)

    assert check(plain), plain
    assert json.loads(json.dumps(plain)) == plain
    assert as_dict(build(cls, plain, label)) == plain  # the record's dict rebuilds the same


def test_enum_errors_list_the_choices():
    with pytest.raises(ConfigError) as info:
        build(MODELS.get("gin"), {"pool": "median"}, "model")
    assert str(info.value) == "model.pool=median: expected one of mean, sum, max"
    with pytest.raises(
        ConfigError, match=r"gcleaner\.explainer=lime: expected one of gnnexplainer"
    ):
        DEFENSES.get("gcleaner")(explainer="lime")


def test_records_keep_the_plain_strings_of_enums():
    """Committed records hold plain strings ("sum", "gradcam"); they rebuild the same."""
    gin = build(MODELS.get("gin"), {}, "model")
    assert as_dict(gin)["pool"] == "sum" and type(as_dict(gin)["pool"]) is str
    gcleaner = DEFENSES.get("gcleaner")()
    assert gcleaner.params()["unlearning"]["heatmap"] == "gradcam"
    assert gcleaner.unlearning.heatmap == "gradcam"  # StrEnum compares to the plain value


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["run", "--task", "graph", "--dataset", "Motifs", "--model", "gin", "--threads", "-3",
          "--out", "x"], "--threads"),
        (["run", "--task", "graph", "--dataset", "Motifs", "--model", "gin", "--seeds", "0",
          "-1", "--out", "x"], "--seeds"),
        (["run", "--task", "graph", "--dataset", "Motifs", "--model", "gin", "--seeds", "one",
          "--out", "x"], "--seeds"),
        (["sweep", "f.yaml", "--out", "x", "--threads", "0"], "--threads"),
        (["serve", "--model", "m", "--api-keys", "k", "--port", "99999"], "--port"),
        (["serve", "--model", "m", "--api-keys", "k", "--port", "0"], "--port"),
        (["serve", "--upstream", "http://h", "--api-keys", "k", "--upstream-timeout", "nan"],
         "--upstream-timeout"),
        (["serve", "--upstream", "http://h", "--api-keys", "k", "--feature-width", "0"],
         "--feature-width"),
        (["serve-model", "--model", "m", "--workers", "0"], "--workers"),
        (["serve-model", "--model", "m", "--max-graphs", "-1"], "--max-graphs"),
        (["serve-model", "--model", "m", "--max-edges", "-1"], "--max-edges"),
        (["serve-model", "--model", "m", "--max-body-bytes", "0"], "--max-body-bytes"),
        (["serve-model", "--model", "m", "--max-nodes", "0"], "--max-nodes"),
    ],
)  # fmt: skip
def test_numeric_flags_out_of_range_are_one_line_errors(capsys, argv, flag):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"argument {flag}" in err and "expected" in err, err
