"""Opt-in on-disk cache of the attack stage of defended graph runs, so that a sweep over a
defense's settings (holding rate aside) trains the clean and the backdoored victims once.

Set ``GNNBACKDOOR_STAGE_CACHE`` to a folder to turn it on; unset, nothing changes. The stage
is everything a :class:`~gnnbackdoor.experiments.pipelines.GraphPipeline` does before the
defense acts: the clean victim, the backdoored victim, the triggered evaluation graphs, the
metrics measured so far, the attack's ``describe()`` and timings, and the Python, NumPy,
torch and run-generator random states at that point. A hit restores all of it, so the
defense sees exactly what an uncached run gives it and every metric is the same; only the
stage's timings are the stored ones (the record's ``attack_info`` says
``stage_cached: true``).

The key hashes the dataset, model, data and training settings, the attack and its
parameters, the seed, the defender's positions in the test split (so holding rates never
share an entry) and the source of the modules that shape the stage (the attack's class and
its base classes in this package, the pipeline, the models and their training).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from gnnbackdoor.utils.files import atomic_torch_save
from gnnbackdoor.utils.seeding import global_rng_states, restore_global_rng_states

ENV = "GNNBACKDOOR_STAGE_CACHE"


@dataclass
class Stage:
    metrics: dict[str, float]
    info: dict[str, Any]
    clean_state: dict[str, torch.Tensor]
    backdoored_state: dict[str, torch.Tensor] | None
    triggered: list[Data]
    seconds: dict[str, float]
    ctx_timings: dict[str, float]
    trigger_positions: list[list[int]] | None = None


def _source_digest(objects: list[Any]) -> str:
    digest = hashlib.sha256()
    for obj in objects:
        try:
            digest.update(Path(inspect.getsourcefile(obj) or "").read_bytes())
        except (TypeError, OSError):
            digest.update(repr(obj).encode())
    return digest.hexdigest()[:16]


def _own_classes(cls: type) -> list[type]:
    """``cls`` and its base classes defined in this package (their modules' sources go into
    the key, so a change to a shared base class, e.g. the trigger attacks' poisoning,
    invalidates the stages it shaped)."""
    return [c for c in cls.__mro__ if c.__module__.startswith("gnnbackdoor.")]


def cache_path(run: Any, defender_positions: list[int], num_eval: int) -> Path | None:
    """The cache file of ``run``'s attack stage, or ``None`` when the cache is off."""
    root = os.environ.get(ENV)
    if not root:
        return None
    import torch_geometric

    from gnnbackdoor import __version__
    from gnnbackdoor.experiments import pipelines
    from gnnbackdoor.experiments.config import as_dict
    from gnnbackdoor.models import graph, train_graph

    attack = run.attack
    parts = {
        "dataset": run.dataset_name,
        "model": [type(run.model_spec).__name__, as_dict(run.model_spec)],
        "data": as_dict(run.data_config),
        "train": as_dict(run.train_config),
        "attack": [type(attack).__name__, attack.params()] if attack is not None else None,
        "seed": run.seed,
        "defender": defender_positions,
        "num_eval": num_eval,
        "versions": [__version__, torch.__version__, torch_geometric.__version__],
        "source": _source_digest([*_own_classes(type(attack)), pipelines, graph, train_graph]),
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return Path(root) / f"stage-{hashlib.sha256(text.encode()).hexdigest()[:24]}.pt"


def save(path: Path, stage: Stage, generator: torch.Generator) -> None:
    """Store ``stage`` atomically (:func:`~gnnbackdoor.utils.files.atomic_write`): parallel
    workers that fill one key never expose a partial file to a reader."""
    payload = {
        "stage": stage,
        **global_rng_states(),
        "generator": generator.get_state(),
    }
    atomic_torch_save(payload, path)


def load(path: Path) -> dict[str, Any] | None:
    """The stored payload, or ``None`` on a miss; :func:`restore_random_states` applies its
    random states once the models have been rebuilt."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception:  # an unreadable entry (e.g. left by an older, non-atomic writer): a miss
        return None


def restore_random_states(payload: dict[str, Any], generator: torch.Generator) -> None:
    restore_global_rng_states(payload)
    generator.set_state(payload["generator"])
