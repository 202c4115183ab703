"""Opt-in on-disk cache of clean graph classifiers, so that the runs of a sweep that share a
(dataset, model, split, training settings, seed) train their clean victim once.

Set ``GNNBACKDOOR_CLEAN_CACHE`` to a folder to turn it on; unset, nothing changes. A hit
restores the model's weights, its training report *and* the Python, NumPy and torch random
states that followed the training, so every later draw of the run (the attack's, the
backdoored victim's initialisation and dropout) and hence every metric is exactly what an
uncached run gives. The key hashes the dataset, the model, data and training settings, the
seed and the package, torch and PyG versions.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from gnnbackdoor.utils.files import atomic_torch_save
from gnnbackdoor.utils.seeding import global_rng_states, restore_global_rng_states

ENV = "GNNBACKDOOR_CLEAN_CACHE"


def cache_path(parts: dict[str, Any]) -> Path | None:
    """The cache file for ``parts`` (JSON-able), or ``None`` when the cache is off."""
    root = os.environ.get(ENV)
    if not root:
        return None
    import torch_geometric

    from gnnbackdoor import __version__

    keyed = {**parts, "versions": [__version__, torch.__version__, torch_geometric.__version__]}
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()
    return Path(root) / f"clean-{digest[:24]}.pt"


def save(path: Path, model: torch.nn.Module, report: Any) -> None:
    """Store the trained model, its report and the random states that follow training.

    Written atomically (:func:`~gnnbackdoor.utils.files.atomic_write`): parallel workers that
    fill one key never expose a partial file to a reader."""
    payload = {
        "state_dict": model.state_dict(),
        "report": {
            "epochs": report.epochs,
            "best_epoch": report.best_epoch,
            "best_val": report.best_val,
            "seconds": report.seconds,
            "history": list(report.history),
        },
        **global_rng_states(),
    }
    atomic_torch_save(payload, path)  # concurrent fills of one key: the last rename wins


def load(path: Path, model: torch.nn.Module, report: Any) -> bool:
    """Fill ``model`` and ``report`` from ``path`` and restore the random states; ``False``
    if there is no usable entry."""
    if not path.is_file():
        return False
    try:
        payload = torch.load(path, weights_only=False)
        model.load_state_dict(payload["state_dict"])
    except Exception:  # a stale or partial entry: train instead
        return False
    model.eval()
    for name, value in payload["report"].items():
        setattr(report, name, value)
    restore_global_rng_states(payload)
    return True
