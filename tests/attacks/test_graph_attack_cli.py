"""Graph attacks behind the runner: one-line errors for bad parameters, and test-time
triggers only on graphs of other classes than the target."""

from __future__ import annotations

import pytest

from gnnbackdoor.attacks.sba import SBA
from gnnbackdoor.cli import main


@pytest.fixture
def base_args(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    return [
        "run", "--task", "graph", "--dataset", "Motifs", "--model", "gin",
        "--out", str(tmp_path / "out"), "--data-mirror", str(mirror),
        "--cache", str(tmp_path / "cache"), "--threads", "1", "--quiet",
        "--set", "train.max_epochs=1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("attack", "setting", "words"),
    [
        ("sba", "attack.injection_ratio=0", "injection_ratio"),
        ("gta", "attack.injection_ratio=1.5", "injection_ratio"),
        ("sba", "attack.pattern=hexagon", "pattern"),
        ("motif-ba", "attack.trigger_size=1", "trigger_size"),
        ("exp-ba", "attack.trigger_fraction=2", "trigger_fraction"),
        pytest.param(
            "sba",
            "attack.trigger_size=500",
            "larger than every training graph",
            marks=pytest.mark.slow,
        ),  # fails after the clean model is trained
        pytest.param("motif-ba", "attack.target_class=7", "target_class", marks=pytest.mark.slow),
    ],
)
def test_bad_parameters_give_one_line_errors(base_args, capsys, attack, setting, words):
    assert main([*base_args, "--attack", attack, "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gnnbackdoor: error:")
    assert words in err


@pytest.mark.slow
def test_triggers_go_only_on_non_target_graphs(base_args, capsys, monkeypatch):
    seen: list[int] = []
    original = SBA.activate

    def spy(self, graphs):
        seen.extend(int(g.y) for g in graphs)
        return original(self, graphs)

    monkeypatch.setattr(SBA, "activate", spy)
    args = [*base_args, "--attack", "sba", "--set", "attack.target_class=2"]
    assert main(args) == 0
    assert seen and 2 not in seen
    assert '"asr"' in capsys.readouterr().out
