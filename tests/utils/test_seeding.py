"""One random stream per stage: fixed by (seed, stage), independent of call order and of the
other stages, and run under a fork that leaves the caller's global generators as they were."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gnnbackdoor.utils.seeding import RunStreams, Stage


def draws(generator: torch.Generator) -> list[float]:
    return torch.rand(5, generator=generator).tolist()


def test_a_stage_stream_depends_only_on_the_seed_and_the_stage():
    first = RunStreams(3)
    for stage in Stage:  # other stages asked first, and drawn from, change nothing
        draws(first.torch_generator(stage))
        first.numpy_generator(stage).random(4)
    later = draws(first.torch_generator(Stage.DEFENSE))
    assert later == draws(RunStreams(3).torch_generator(Stage.DEFENSE))
    assert first.seed(Stage.ATTACK) == RunStreams(3).seed(Stage.ATTACK)
    assert np.array_equal(
        first.numpy_generator(Stage.VICTIM).random(3),
        RunStreams(3).numpy_generator(Stage.VICTIM).random(3),
    )


def test_stages_and_seeds_give_different_streams():
    streams = RunStreams(0)
    seen = {tuple(draws(streams.torch_generator(stage))) for stage in Stage}
    assert len(seen) == len(Stage)
    assert len({streams.seed(stage) for stage in Stage}) == len(Stage)
    assert draws(RunStreams(1).torch_generator(Stage.ATTACK)) != draws(
        streams.torch_generator(Stage.ATTACK)
    )
    assert 0 <= streams.seed(Stage.DATA_SPLIT) < 2**32


def test_running_seeds_the_global_generators_and_restores_the_callers():
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    expected = (torch.rand(2).tolist(), random.random(), float(np.random.rand()))
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    inside = []
    for _ in range(2):
        with RunStreams(7).running(Stage.VICTIM) as generator:
            inside.append(
                (torch.rand(2).tolist(), random.random(), float(np.random.rand()), draws(generator))
            )
    assert inside[0] == inside[1]  # seeded from the stage, not from the caller's state
    assert inside[0][3] == draws(RunStreams(7).torch_generator(Stage.VICTIM))
    after = (torch.rand(2).tolist(), random.random(), float(np.random.rand()))
    assert after == expected  # the caller's states continue as if nothing ran


def test_running_restores_the_callers_state_on_error():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with pytest.raises(RuntimeError), RunStreams(0).running(Stage.ATTACK):
        torch.rand(10)
        raise RuntimeError("stage failed")
    assert torch.equal(torch.rand(3), expected)


def test_stage_values_are_fixed_spawn_keys():
    """Renumbering a stage would move every recorded draw of it."""
    assert [s.value for s in Stage] == [0, 1, 2, 3, 4, 5]
    assert [s.name for s in Stage] == [
        "DATA_SPLIT",
        "VICTIM",
        "ATTACK",
        "DEFENDER_SPLIT",
        "DEFENSE",
        "EVALUATION",
    ]


def test_negative_seed_is_refused():
    with pytest.raises(ValueError):
        RunStreams(-1)
