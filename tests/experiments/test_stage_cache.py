"""The opt-in stage cache: a defended run that hits it gives exactly the uncached metrics."""

from __future__ import annotations

import json

import pytest

from gnnbackdoor.cli import main

ARGS = [
    "run",
    "--task",
    "graph",
    "--dataset",
    "Motifs",
    "--model",
    "gin",
    "--attack",
    "sba",
    "--defense",
    "gcleaner",
    "--threads",
    "1",
    "--quiet",
    "--set",
    "train.max_epochs=5",
    "attack.target_class=0",
    "defense.explainer=random",
    "defense.recovery.epochs=2",
    "defense.unlearning.epochs=2",
    "defense.unlearning.teacher_epochs=1",
]


def _record(folder):
    return json.loads((folder / "records.jsonl").read_text().splitlines()[0])


@pytest.mark.slow
def test_cache_hit_reproduces_the_uncached_run(tmp_path, monkeypatch):
    assert main([*ARGS, "--out", str(tmp_path / "plain")]) == 0
    monkeypatch.setenv("GNNBACKDOOR_STAGE_CACHE", str(tmp_path / "cache"))
    assert main([*ARGS, "--out", str(tmp_path / "miss")]) == 0
    assert len(list((tmp_path / "cache").glob("stage-*.pt"))) == 1
    assert main([*ARGS, "--out", str(tmp_path / "hit")]) == 0
    plain, miss, hit = (_record(tmp_path / d) for d in ("plain", "miss", "hit"))
    assert plain["metrics"] == miss["metrics"] == hit["metrics"]
    assert hit["attack_info"].get("stage_cached") is True
    assert "stage_cached" not in miss["attack_info"]


def test_the_key_covers_the_attacks_base_classes():
    from gnnbackdoor.attacks import ATTACKS
    from gnnbackdoor.attacks.base import GraphAttack
    from gnnbackdoor.attacks.triggers import SubgraphTriggerAttack
    from gnnbackdoor.experiments.stage_cache import _own_classes

    classes = _own_classes(ATTACKS.get("sba"))
    assert SubgraphTriggerAttack in classes and GraphAttack in classes
    assert object not in classes
