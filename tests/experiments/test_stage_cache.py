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


GTA_ARGS = [
    *("gta" if a == "sba" else a for a in ARGS),
    "attack.bilevel_epochs=1",
    "attack.trigger_size=3",
]


@pytest.mark.slow
def test_single_node_asr_survives_the_cache_and_moves_no_other_figure(tmp_path, monkeypatch):
    """GTA runs record ``single_node_asr`` (issue 14 item 4), the same from the stage cache;
    without it every other figure is unchanged (its draws are its own)."""
    import gnnbackdoor.experiments.pipelines as pipelines

    assert "gta" in GTA_ARGS
    monkeypatch.setenv("GNNBACKDOOR_STAGE_CACHE", str(tmp_path / "cache"))
    assert main([*GTA_ARGS, "--out", str(tmp_path / "miss")]) == 0
    assert main([*GTA_ARGS, "--out", str(tmp_path / "hit")]) == 0
    miss, hit = _record(tmp_path / "miss"), _record(tmp_path / "hit")
    assert 0.0 <= miss["metrics"]["single_node_asr"] <= 1.0
    assert miss["metrics"] == hit["metrics"]
    assert 0.0 <= miss["attack_info"]["trigger_feature_rarity"] <= 1.0
    monkeypatch.delenv("GNNBACKDOOR_STAGE_CACHE")
    monkeypatch.setattr(pipelines, "_single_node_copies", lambda *args: None)
    assert main([*GTA_ARGS, "--out", str(tmp_path / "without")]) == 0
    without = _record(tmp_path / "without")["metrics"]
    assert "single_node_asr" not in without
    assert without == {k: v for k, v in miss["metrics"].items() if k != "single_node_asr"}
