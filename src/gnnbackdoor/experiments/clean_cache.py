"""Opt-in on-disk cache of clean graph classifiers, so that the runs of a sweep that share a
(dataset, model, split, training settings, seed) train their clean victim once.

Set ``GNNBACKDOOR_CLEAN_CACHE`` to a folder to turn it on; unset, nothing changes. A hit
restores the model's weights and its training report. The clean victim is trained in the
victim stage, whose random stream no other stage shares (:mod:`gnnbackdoor.utils.seeding`),
so skipping its training moves no later draw and every metric is exactly what an uncached
run gives; an entry holds no random state. The key hashes the dataset, the model, data and
training settings, the seed, torch's thread count, the package, torch and PyG versions, the
version of the run's random streams (:data:`STREAMS`), and the source of the modules that
shape the victim (:func:`~gnnbackdoor.utils.sources.source_digest`; the pipeline names them:
the model's and the dataset's classes, training and seeding), so an entry trained by other
code never hits, as in the stage cache. (Until 2026-12-05 the key held no source, and an
entry made before a change to the model or its training would have been reused.)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from gnnbackdoor.utils.files import atomic_torch_save
from gnnbackdoor.utils.sources import source_digest

ENV = "GNNBACKDOOR_CLEAN_CACHE"

#: How the victim stage's randomness is derived and how it trains; entries made otherwise
#: never hit ("+single-graph-batch": training skips a last mini-batch of one graph).
STREAMS = "run-streams-v1+single-graph-batch"


def cache_path(parts: dict[str, Any], sources: list[Any]) -> Path | None:
    """The cache file for ``parts`` (JSON-able), or ``None`` when the cache is off.

    Args:
        sources: Modules or classes whose source shapes the victim (their digest is part of
            the key).
    """
    root = os.environ.get(ENV)
    if not root:
        return None
    import torch_geometric

    from gnnbackdoor import __version__

    keyed = {
        **parts,
        "threads": torch.get_num_threads(),
        "streams": STREAMS,
        "source": source_digest(sources),
        "versions": [__version__, torch.__version__, torch_geometric.__version__],
    }
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()
    return Path(root) / f"clean-{digest[:24]}.pt"


def save(path: Path, model: torch.nn.Module, report: Any) -> None:
    """Store the trained model and its report.

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
            "diverged_epoch": report.diverged_epoch,
        },
    }
    atomic_torch_save(payload, path)  # concurrent fills of one key: the last rename wins


def load(path: Path, model: torch.nn.Module, report: Any) -> bool:
    """Fill ``model`` and ``report`` from ``path``; ``False`` if there is no usable entry."""
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
    return True
