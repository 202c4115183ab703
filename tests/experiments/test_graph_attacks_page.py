"""The graph_attacks page renders from records alone and puts the papers' rows beside ours."""

from __future__ import annotations

from gnnbackdoor.experiments.pages import PAGES, load_pages
from gnnbackdoor.experiments.pages.common import nested


def record(seed: int, asr: float, target: int = 1) -> dict:
    return {
        "task": "graph",
        "dataset": "AIDS",
        "model": "gcn",
        "attack": "gta",
        "defense": None,
        "seed": seed,
        "overrides": {},
        "config": nested(
            {
                "data.train_fraction": 0.6667,
                "attack.trigger_size": 5,
                "attack.target_class": target,
            }
        ),
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


def test_target_class_0_runs_get_their_own_table():
    load_pages()
    runs = [record(0, 1.0), record(1, 0.98), record(2, 0.99)]
    runs += [record(0, 0.5, target=0), record(1, 0.7, target=0)]
    text = PAGES.get("graph_attacks")(runs)
    main, _, rest = text.partition("### Target class 0")
    assert "60.00 ± 14.14 (2)" in rest and "60.00" not in main
    assert "| GTA | AIDS | gcn | 90.00" in rest
    assert "99.00 ± 1.00 (3)" in main


def defended(seed: int, asr: float, defense: str, model: str = "sage") -> dict:
    return {**record(seed, asr), "model": model, "defense": defense}


def test_cells_without_attack_records_use_a_defended_sweep_once_per_seed():
    load_pages()
    runs = [record(0, 1.0), record(1, 0.98), record(2, 0.99)]
    # three shield variants share each seed's attack stage: counted once per seed
    runs += [
        defended(s, a, d) for s, a in ((0, 0.5), (1, 0.7)) for d in ("graphprot-r", "graphprot-t")
    ]
    # a GCN cell that has its own records ignores the defended ones
    runs += [defended(0, 0.0, "graphprot-r", model="gcn")]
    text = PAGES.get("graph_attacks")(runs)
    sage = next(line for line in text.splitlines() if line.startswith("| AIDS | sageᴾ |"))
    assert "60.00 ± 14.14 (2)" in sage
    gta_gcn = [line for line in text.splitlines() if line.startswith("| AIDS | gcn")]
    assert [line for line in gta_gcn if "99.00 ± 1.00 (3)" in line]
    assert not [line for line in gta_gcn if "gcnᴾ" in line]
