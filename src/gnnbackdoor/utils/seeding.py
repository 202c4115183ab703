"""One source of randomness per run: the run seed spawns one independent stream per stage.

A run is a sequence of stages (:class:`Stage`). Stage ``s`` of a run with seed ``seed`` draws
from ``numpy.random.SeedSequence(seed, spawn_key=(s.value,))``, which depends on nothing but
the seed and the stage: changing what one stage does (a defense setting, the number of
draws an attack makes) never moves a draw of another stage, and the order in which stages
ask for their streams does not matter.

Components draw from the ``torch.Generator`` they are handed (``ctx.generator``: the
generator of the stage currently acting). Some draws cannot be handed a generator: torch's
module initialisation and dropout use torch's global generator, and PyG's negative sampler
(``RandomLinkSplit``, link training) uses Python's ``random``. So the pipeline runs each stage
inside :meth:`RunStreams.running`, which forks the global torch, Python and NumPy states,
seeds them from the stage's stream, and restores the caller's states afterwards. Library
code never seeds a global generator otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

import numpy as np
import torch


class Stage(Enum):
    """The stages of a run, each with its own random stream (values are spawn keys: never
    renumber them, or every recorded draw moves)."""

    DATA_SPLIT = 0
    VICTIM = 1
    ATTACK = 2
    DEFENDER_SPLIT = 3
    DEFENSE = 4
    EVALUATION = 5


class RunStreams:
    """The random streams of one run.

    Args:
        seed: The run's seed, any non-negative integer.

    Every accessor derives its value afresh from ``SeedSequence(seed, spawn_key=(stage,))``,
    so two calls for the same stage give equal, independent copies (never a shared, mutated
    object).
    """

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"a run seed must be >= 0, got {seed}")
        self.run_seed = int(seed)

    def sequence(self, stage: Stage) -> np.random.SeedSequence:
        """The stage's ``SeedSequence``."""
        return np.random.SeedSequence(self.run_seed, spawn_key=(stage.value,))

    def seed(self, stage: Stage) -> int:
        """An integer seed of the stage in ``[0, 2**32)`` (accepted by scikit-learn's
        ``random_state``, ``numpy.random.seed``, ``torch.manual_seed`` and ``random.seed``)."""
        return int(self.sequence(stage).generate_state(1, np.uint32)[0])

    def torch_generator(self, stage: Stage) -> torch.Generator:
        """A new CPU ``torch.Generator`` seeded from the stage's stream."""
        word = self.sequence(stage).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(word[0]) << 32 | int(word[1]))

    def numpy_generator(self, stage: Stage) -> np.random.Generator:
        """A new ``numpy.random.Generator`` over the stage's stream."""
        return np.random.default_rng(self.sequence(stage))

    @contextmanager
    def running(self, stage: Stage) -> Iterator[torch.Generator]:
        """Run a stage: inside, torch's global generator (CPU, and CUDA where present),
        Python's ``random`` and NumPy's legacy global state are seeded from the stage's
        stream; on exit the caller's states are restored. Yields the stage's
        ``torch.Generator`` (:meth:`torch_generator`), to hand to components as
        ``ctx.generator``."""
        seed = self.seed(stage)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed)
                yield self.torch_generator(stage)
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def use_deterministic_kernels() -> None:
    """Ask torch for deterministic kernels (warning, not failing, where an op has none)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
