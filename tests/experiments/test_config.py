"""``--set`` overrides: routing to sections, type conversion and one-line errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gnnbackdoor.errors import ConfigError
from gnnbackdoor.experiments.config import (
    DataConfig,
    convert,
    parse_assignments,
    split_overrides,
)
from gnnbackdoor.models.train_link import LinkTrainConfig


@dataclass
class _Attack:
    m: int = 2
    ratio: float = 0.1
    surrogate: str | None = None
    lr: float = 0.1
    flags: list[int] | None = None
    enabled: bool = True


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


def test_ambiguous_bare_key_must_be_dotted():
    with pytest.raises(ConfigError, match="ambiguous"):
        split_overrides({"lr": "0.1"}, SECTIONS)
    assert split_overrides({"train.lr": "0.1"}, SECTIONS)["train"] == {"lr": 0.1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nope": "1"}, "unknown key"),
        ({"defense.x": "1"}, "no section 'defense'"),
        ({"m": "two"}, "expects int"),
        ({"enabled": "maybe"}, "expects true or false"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        split_overrides(overrides, SECTIONS)
    assert "\n" not in str(info.value)


def test_optional_values_accept_none():
    assert convert("none", str | None, "k") is None
    assert convert("gae", str | None, "k") == "gae"
