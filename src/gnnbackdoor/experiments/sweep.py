"""Sweeps as grids in YAML, expanded into run specs.

A sweep file holds a list ``runs`` of blocks; each block is the product of its lists::

    runs:
      - task: link
        datasets: [Cora, CiteSeer]
        models: [gae, vgae]
        attacks: [null, link-backdoor]   # optional (null: no attack)
        defenses: [null]                 # optional
        seeds: [0, 1, 2]
        set: {train.patience: 100}       # optional, applied to every run of the block
        grid: {attack.m: [1, 2, 3]}      # optional, one run per combination
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from gnnbackdoor.errors import ConfigError, UserError
from gnnbackdoor.experiments.runner import RunSpec

_BLOCK_KEYS = {"task", "datasets", "models", "attacks", "defenses", "seeds", "set", "grid"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    """An override value as the command line would spell it (YAML ``true`` -> ``"true"``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def expand_block(block: dict[str, Any]) -> list[RunSpec]:
    unknown = set(block) - _BLOCK_KEYS
    if unknown:
        raise ConfigError(
            f"sweep block has unknown keys {sorted(unknown)}; valid: {sorted(_BLOCK_KEYS)}"
        )
    for required in ("task", "datasets", "models"):
        if required not in block:
            raise ConfigError(f"sweep block lacks {required!r}")
    fixed = {str(k): _text(v) for k, v in (block.get("set") or {}).items()}
    grid = block.get("grid") or {}
    grid_keys = list(grid)
    grid_values = [_as_list(grid[k]) for k in grid_keys]
    specs = []
    for dataset, model, attack, defense, combo, seed in itertools.product(
        _as_list(block["datasets"]),
        _as_list(block["models"]),
        _as_list(block.get("attacks", [None])),
        _as_list(block.get("defenses", [None])),
        list(itertools.product(*grid_values)),
        _as_list(block.get("seeds", [0])),
    ):
        overrides = dict(fixed)
        overrides.update({k: _text(v) for k, v in zip(grid_keys, combo, strict=True)})
        specs.append(
            RunSpec(
                str(block["task"]), str(dataset), str(model), attack, defense, int(seed), overrides
            )
        )
    return specs


def load_sweep(path: Path) -> list[RunSpec]:
    """All run specs of a sweep file, in file order."""
    try:
        content = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"no sweep file {path}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(content, dict) or not isinstance(content.get("runs"), list):
        raise ConfigError(f"{path}: expected a mapping with a list 'runs'")
    return [spec for block in content["runs"] for spec in expand_block(block)]
