"""Deterministic seeding for CPU runs."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels.

    Args:
        seed: Any non-negative integer.

    Returns:
        A fresh ``torch.Generator`` seeded with ``seed`` for code that wants its own stream.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def global_rng_states() -> dict[str, Any]:
    """The Python, NumPy and torch global generator states (for caches that must leave a
    run's later draws exactly as an uncached run would)."""
    return {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
    }


def restore_global_rng_states(states: dict[str, Any]) -> None:
    """Restore states taken by :func:`global_rng_states` (extra keys are ignored)."""
    torch.set_rng_state(states["torch_rng"])
    np.random.set_state(states["numpy_rng"])
    random.setstate(states["python_rng"])
