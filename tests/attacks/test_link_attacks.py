"""Every link-prediction attack through the link pipeline on the generated SBM (a case list,
as for the graph attacks): it fits, backdoors and activates through the base-class methods
with the draws of its own stage, and the pipeline measures it."""

from __future__ import annotations

import math

import pytest
import torch

from gnnbackdoor.attacks import ATTACKS, LinkAttack
from gnnbackdoor.datasets import DATASETS
from gnnbackdoor.experiments.config import DataConfig
from gnnbackdoor.experiments.pipelines import LinkPipeline, ResolvedRun
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_link import LinkTrainConfig
from gnnbackdoor.utils.timing import PhaseTimer

#: (registered name, fast parameters) - adding a link attack here runs it through every check.
LINK_CASES = [
    ("link-backdoor", {"init_updates": 1, "num_test_targets": 20}),
    ("link-backdoor-no-inj", {"init_updates": 1, "num_test_targets": 20}),
    ("erb", {"num_test_targets": 20}),
    ("r-backdoor", {"num_test_targets": 20}),
    ("p-backdoor", {"particles": 6, "iterations": 3, "num_test_targets": 20}),
    ("gta-link", {"generator_steps": 3, "update_every": 3, "num_test_targets": 20}),
]


def test_every_link_attack_has_a_case():
    registered = {
        n for n, c in ATTACKS.items() if issubclass(c, LinkAttack) and not n.startswith("test-")
    }
    assert registered <= {name for name, _ in LINK_CASES}


def same(a: dict, b: dict) -> bool:
    """Equal dicts, ``nan`` equal to ``nan``."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        for k in a
    )


def run_of(name: str, params: dict, location, seed: int = 0) -> ResolvedRun:
    return ResolvedRun(
        dataset_name="SBM",
        dataset=DATASETS.get("SBM")(),
        model_spec=MODELS.get("gae")(),
        data_config=DataConfig(),
        train_config=LinkTrainConfig(max_epochs=10, patience=10),
        attack=ATTACKS.get(name)(**params),
        defense=None,
        seed=seed,
        location=location,
    )


@pytest.mark.parametrize(("name", "params"), LINK_CASES, ids=[n for n, _ in LINK_CASES])
def test_every_link_attack_runs_in_the_pipeline_and_repeats(name, params, offline_location):
    torch.manual_seed(0)
    expected_next = torch.rand(2)
    torch.manual_seed(0)
    first = LinkPipeline().execute(run_of(name, params, offline_location), PhaseTimer())
    assert torch.equal(torch.rand(2), expected_next)  # the caller's global state untouched
    metrics = first.metrics
    assert metrics["num_targets"] == params["num_test_targets"]
    assert 0 <= metrics["num_eligible"] <= metrics["num_targets"]
    for key in ("asr", "amc", "clean_model_asr", "no_trigger_rate", "backdoored_auc"):
        assert math.isnan(metrics[key]) or 0.0 <= metrics[key] <= 1.0, key
    again = LinkPipeline().execute(run_of(name, params, offline_location), PhaseTimer())
    assert same(again.metrics, metrics) and again.attack_info == first.attack_info
