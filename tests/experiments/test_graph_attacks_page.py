"""The graph_attacks page renders from records alone and puts the papers' rows beside ours."""

from __future__ import annotations

from gnnbackdoor.experiments.pages import PAGES, load_pages


def record(seed: int, asr: float) -> dict:
    return {
        "task": "graph",
        "dataset": "AIDS",
        "model": "gcn",
        "attack": "gta",
        "defense": None,
        "seed": seed,
        "overrides": {"data.train_fraction": "0.6667", "attack.trigger_size": "5"},
        "metrics": {"clean_acc": 0.9, "backdoored_acc": 0.89, "asr": asr, "clean_model_asr": 0.1},
        "attack_info": {"trigger_size": 5},
        "versions": {"git_commit": "abc", "torch": "t", "torch_geometric": "p"},
    }


def test_page_shows_ours_beside_graphprot():
    load_pages()
    text = PAGES.get("graph_attacks")([record(0, 1.0), record(1, 0.98), record(2, 0.99)])
    row = next(line for line in text.splitlines() if line.startswith("| AIDS | gcn | 90.00"))
    assert "99.00 ± 1.00 (3)" in row  # our ASR, mean ± std over 3 seeds
    assert "| 99.8 |" in row and "| 91.7 |" in row  # GraphProt Table 1, backdoored GCN
    assert "ASR ok, acc ok" in row
    assert "1 with at least 3 seeds" in text
