"""``--set`` overrides: routing to (nested) sections, type conversion and one-line errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum

import pytest

from gnnbackdoor.errors import ConfigError
from gnnbackdoor.experiments.config import (
    DataConfig,
    as_dict,
    build,
    convert,
    parse_assignments,
    split_overrides,
)
from gnnbackdoor.models.train_link import LinkTrainConfig
from gnnbackdoor.settings import Fraction, PositiveFloat, PositiveInt, Settings


class _Mode(StrEnum):
    FAST = "fast"
    SLOW = "slow"


@dataclass
class _Inner(Settings):
    lr: PositiveFloat = 0.01
    mode: _Mode = _Mode.FAST


@dataclass
class _Attack(Settings):
    m: PositiveInt = 2
    ratio: Fraction = 0.1
    surrogate: str | None = None
    lr: PositiveFloat = 0.1
    flags: list[int] | None = None
    enabled: bool = True
    inner: _Inner = field(default_factory=_Inner)


SECTIONS = {"data": DataConfig, "train": LinkTrainConfig, "attack": _Attack, "defense": None}


def test_parse_assignments():
    assert parse_assignments(["a.b=1", "c= x "]) == {"a.b": "1", "c": "x"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["novalue"])


def test_bare_and_dotted_keys_are_routed_and_typed():
    routed = split_overrides(
        {
            "m": "3",
            "attack.ratio": "0.5",
            "patience": "7",
            "surrogate": "vgae",
            "enabled": "false",
            "flags": "1,2",
        },
        SECTIONS,
    )
    assert routed["attack"] == {
        "m": 3,
        "ratio": 0.5,
        "surrogate": "vgae",
        "enabled": False,
        "flags": [1, 2],
    }
    assert routed["train"] == {"patience": 7}
    assert routed["defense"] == {} and routed["data"] == {}


def test_nested_keys_are_routed_typed_and_built():
    routed = split_overrides({"attack.inner.lr": "0.5", "inner.mode": "slow"}, SECTIONS)
    assert routed["attack"] == {"inner": {"lr": 0.5, "mode": _Mode.SLOW}}
    attack = build(_Attack, routed["attack"], "attack")
    assert attack.inner == _Inner(lr=0.5, mode=_Mode.SLOW)
    assert attack.m == 2  # untouched keys keep their defaults


def test_yaml_values_equal_their_text():
    """A YAML value (typed) and the same value typed on the command line give one setting."""
    typed = split_overrides({"attack.m": 3, "attack.enabled": False, "train.lr": 0.1}, SECTIONS)
    text = split_overrides(
        {"attack.m": "3", "attack.enabled": "false", "train.lr": "0.1"}, SECTIONS
    )
    assert typed == text


def test_ambiguous_bare_key_must_be_dotted():
    with pytest.raises(ConfigError, match="ambiguous"):
        split_overrides({"lr": "0.1"}, SECTIONS)
    assert split_overrides({"train.lr": "0.1"}, SECTIONS)["train"] == {"lr": 0.1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nope": "1"}, "unknown key"),
        ({"defense.x": "1"}, "no section 'defense'"),
        ({"m": "two"}, r"attack\.m=two: expected an integer >= 1"),
        ({"m": "0"}, r"attack\.m=0: expected an integer >= 1"),
        ({"ratio": "1.5"}, r"attack\.ratio=1\.5: expected a finite number in \(0, 1\]"),
        ({"train.lr": "inf"}, r"train\.lr=inf: expected a finite number > 0"),
        ({"train.lr": "nan"}, r"train\.lr=nan: expected a finite number > 0"),
        ({"enabled": "maybe"}, "expected true or false"),
        (
            {"attack.inner.mode": "medium"},
            r"attack\.inner\.mode=medium: expected one of fast, slow",
        ),
        ({"attack.inner": "1"}, r"attack\.inner is a section; set its keys \(lr, mode\)"),
        ({"attack": "1"}, r"name a key, e\.g\. attack\.<key>"),
        ({"data.link_val": "0.6", "data.link_test": "0.5"}, "below 1"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        values = split_overrides(overrides, SECTIONS)
        build(DataConfig, values["data"], "data")
    assert "\n" not in str(info.value)


def test_unknown_keys_list_the_valid_keys_at_their_level():
    with pytest.raises(ConfigError) as info:
        split_overrides({"attack.inner.lrr": "1"}, SECTIONS)
    assert str(info.value) == (
        "--set attack.inner.lrr: unknown key; valid keys under attack.inner: lr, mode"
    )
    with pytest.raises(ConfigError) as info:
        split_overrides({"attack.mm": "1"}, SECTIONS)
    assert "valid keys under attack: enabled, flags, inner.<key>, lr, m, ratio, surrogate" in str(
        info.value
    )


def test_optional_values_accept_none():
    assert convert("none", str | None, "k") is None
    assert convert("gae", str | None, "k") == "gae"
    assert split_overrides({"surrogate": "null"}, SECTIONS)["attack"] == {"surrogate": None}


def test_direct_construction_is_checked_by_the_same_converter():
    with pytest.raises(ConfigError, match=r"inner\.lr=-1: expected a finite number > 0"):
        _Attack(inner={"lr": -1})
    with pytest.raises(ConfigError, match=r"_Attack\.m=0: expected an integer >= 1"):
        _Attack(m=0)
    assert _Attack(inner={"mode": "slow"}).inner.mode is _Mode.SLOW


def test_as_dict_is_plain_json():
    """Records keep plain values: enums as their values, nested sections as dicts."""
    attack = _Attack(inner=_Inner(mode=_Mode.SLOW), flags=[1, 2])
    plain = as_dict(attack)
    assert plain["inner"] == {"lr": 0.01, "mode": "slow"}
    assert type(plain["inner"]["mode"]) is str
    assert json.loads(json.dumps(plain)) == plain
