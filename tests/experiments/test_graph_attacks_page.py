"""The graph_attacks page renders from records alone, puts the papers' rows beside ours, keeps
majority-target runs apart, marks pre-issue-14 victims and judges each table (issue 14)."""

from __future__ import annotations

import json
import math

from gnnbackdoor.experiments.pages import PAGES, load_pages
from gnnbackdoor.experiments.pages.common import nested
from gnnbackdoor.experiments.pages.graph_attacks import judge_table


def record(
    seed: int,
    asr: float,
    target: int = 0,
    norm: str = "batch_norm",
    dataset: str = "AIDS",
    model: str = "gcn",
    ratio: float = 0.1,
    poisoned_val: bool = False,
    trigger_size: int = 5,
    attack: str = "gta",
    **metrics: float,
) -> dict:
    return {
        "task": "graph",
        "dataset": dataset,
        "model": model,
        "attack": attack,
        "defense": None,
        "seed": seed,
        "overrides": {},
        "config": nested(
            {
                "data.train_fraction": 0.6667,
                "attack.trigger_size": trigger_size,
                "attack.target_class": target,
                "attack.injection_ratio": ratio,
                "attack.poison_validation": poisoned_val,
                "model.norm": norm,
            }
        ),
        "metrics": {
            "clean_acc": 0.9,
            "backdoored_acc": 0.89,
            "asr": asr,
            "clean_model_asr": 0.1,
            **metrics,
        },
        "attack_info": {"trigger_size": 5},
        "versions": {"git_commit": "abc", "torch": "t", "torch_geometric": "p"},
    }


def _render(runs: list[dict]) -> str:
    load_pages()
    return PAGES.get("graph_attacks")(runs)


def test_page_shows_ours_beside_graphprot():
    text = _render([record(0, 1.0), record(1, 0.98), record(2, 0.99)])
    row = next(line for line in text.splitlines() if line.startswith("| AIDS | gcn | 90.00"))
    assert "99.00 ± 1.00 (3)" in row  # our ASR, mean ± std over 3 seeds
    assert "| 99.8 |" in row and "| 91.7 |" in row  # GraphProt Table 1, backdoored GCN
    assert "ASR ok, acc ok" in row
    assert "| 3 of 3 | 0 of 3 |" in row  # implanted, collapsed
    assert "on issue 14's victims 1 with at least 3 seeds" in text


def test_majority_target_runs_go_to_the_sensitivity_section():
    runs = [record(0, 1.0), record(1, 0.98), record(2, 0.99)]
    runs += [record(0, 0.5, target=1), record(1, 0.7, target=1)]
    text = _render(runs)
    main, _, rest = text.partition("## Sensitivity")
    assert "60.00 ± 14.14 (2)" in rest and "60.00 ± 14.14" not in main
    assert "| GTA | 1 | AIDS | gcn | 90.00" in rest
    assert "99.00 ± 1.00 (3)" in main


def test_other_attack_settings_go_to_their_own_section_beside_the_protocol_row():
    runs = [record(s, 0.3) for s in range(3)]  # protocol (0.1, clean validation): not implanted
    runs += [record(s, 0.95, ratio=0.2) for s in range(3)]
    runs += [record(0, 0.1, ratio=0.05), record(0, 0.85, poisoned_val=True)]
    runs += [record(1, 0.75, trigger_size=8)]
    text = _render(runs)
    main, _, rest = text.partition("## Sensitivity: attack settings")
    assert "30.00 ± 0.00 (3)" in main
    assert "95.00" not in main and "85.00" not in main and "75.00" not in main
    section = rest.split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| GTA | AIDS | gcn")]
    assert [tuple(line.split(" | ")[3:6]) for line in rows] == [
        ("0.05", "no", "5"), ("0.1", "no", "5"), ("0.1", "no", "8"), ("0.1", "yes", "5"),
        ("0.2", "no", "5"),
    ]  # fmt: skip
    assert "| 0 of 3 |" in rows[1] and "| 3 of 3 |" in rows[4]  # implanted only at 0.2
    assert "75.00 ± 0.00 (1)" in rows[2]
    assert "85.00 ± 0.00 (1)" in rows[3]
    assert "## Sensitivity: attack settings" not in _render(runs[:3])


def test_attack_variants_sit_beside_their_attack_in_the_settings_section_only():
    sba = [record(s, 0.1, 1, dataset="COLLAB", model="sage", attack="sba") for s in range(3)]
    variant = [record(s, 0.6, 1, dataset="COLLAB", model="sage", attack="sba-degree")
               for s in range(2)]  # fmt: skip
    text = _render(sba + variant)
    main, _, rest = text.partition("## Sensitivity: attack settings")
    assert "60.00" not in main and "10.00 ± 0.00 (3)" in main
    section = rest.split("\n## ")[0]
    rows = [line for line in section.splitlines() if "| COLLAB | sage" in line]
    assert rows[0].startswith("| SBA | COLLAB | sage") and "10.00 ± 0.00 (3)" in rows[0]
    assert rows[1].startswith("| SBA, trigger nodes' degree features recomputed | COLLAB")
    assert "60.00 ± 0.00 (2)" in rows[1] and "| 2 of 2 |" in rows[1]
    assert len(rows) == 2


def test_pre_protocol_victims_are_marked_and_replaced_by_new_ones():
    old = [record(s, 0.5, norm="none") for s in range(3)]
    text = _render(old)
    row = next(line for line in text.splitlines() if line.startswith("| AIDS | gcn† |"))
    assert "† not judged" in row
    assert "judged over 0 rows" in text and "(1 † rows not judged)" in text
    text = _render([*old, record(0, 0.95)])
    row = next(line for line in text.splitlines() if line.startswith("| AIDS | gcn | 90.00"))
    assert "95.00 ± 0.00 (1)" in row and "gcn†" not in text


def test_judgement_line_lists_collapsed_models_and_the_accuracy_cost():
    runs = [record(0, 1.0, backdoored_collapsed=1.0, backdoored_majority_share=0.97)]
    runs += [record(1, 0.99), record(2, 0.98)]
    text = _render(runs)
    line = next(line for line in text.splitlines() if line.startswith("**GTA, judged over 1"))
    assert "collapsed backdoored models 1 (AIDS gcn seed 0 (majority share 97.0 %))" in line
    assert "cost 1.00 points (target ≤ 3: met)" in line
    assert "ASR ≥ 80 % in 1 of the 1 rows" in line


def test_a_collapsed_model_is_listed_beside_its_clean_victim_when_recorded():
    lopsided = record(
        0, 0.9, backdoored_collapsed=1.0, backdoored_majority_share=0.28,
        clean_majority_share=0.27, clean_collapsed=1.0,
    )  # fmt: skip
    fair = record(1, 0.9, backdoored_collapsed=1.0, backdoored_majority_share=0.9,
                  clean_majority_share=0.55, clean_collapsed=0.0)  # fmt: skip
    judged = judge_table([("ENZYMES gcn", [lopsided, fair], 90.0)])
    assert judged["collapsed"] == [
        "ENZYMES gcn seed 0 (majority share 28.0 %; clean victim 27.0 %, collapsed too)",
        "ENZYMES gcn seed 1 (majority share 90.0 %; clean victim 55.0 %)",
    ]


def test_judge_table_on_synthetic_rows():
    ok = [record(s, 0.9) for s in range(3)]
    bad = [
        {**record(s, 0.6, dataset="DHFR"), "metrics": {"clean_acc": 0.8, "backdoored_acc": 0.7,
         "asr": 0.6, "clean_model_asr": 0.1, "backdoored_collapsed": float(s == 1)}}
        for s in range(3)
    ]  # fmt: skip
    old = [record(0, 0.2, norm="none")]
    judged = judge_table(
        [("AIDS gcn", ok, 99.0), ("DHFR gcn", bad, 85.0), ("old", old, 90.0), ("x", [], 90.0)]
    )
    assert judged["judged"] == 2 and judged["unjudged"] == 1
    assert judged["collapsed"] == ["DHFR gcn seed 1 (majority share — %)"]
    assert math.isclose(judged["cost"], (1.0 + 10.0) / 2)
    assert not judged["cost_ok"]
    assert (judged["high"], judged["high_met"], judged["high_missed"]) == (2, 1, ["DHFR gcn"])
    assert math.isnan(judge_table([])["cost"]) and not judge_table([])["cost_ok"]


def test_gta_rows_show_single_node_asr_and_trigger_rarity():
    runs = [record(s, 0.9, single_node_asr=0.5) for s in range(3)]
    for r in runs:
        r["attack_info"]["trigger_feature_rarity"] = 0.012
    text = _render(runs)
    row = next(line for line in text.splitlines() if line.startswith("| AIDS | gcn | 90.00"))
    assert "| 50.0 | 1.20 |" in row


def defended(seed: int, asr: float, defense: str, model: str = "sage", **kw) -> dict:
    return {**record(seed, asr, model=model, **kw), "defense": defense}


def test_cells_without_attack_records_use_a_defended_sweep_once_per_seed():
    runs = [record(0, 1.0), record(1, 0.98), record(2, 0.99)]
    # three shield variants share each seed's attack stage: counted once per seed
    runs += [
        defended(s, a, d) for s, a in ((0, 0.5), (1, 0.7)) for d in ("graphprot-r", "graphprot-t")
    ]
    # a GCN cell that has its own records ignores the defended ones
    runs += [defended(0, 0.0, "graphprot-r", model="gcn")]
    text = _render(runs)
    sage = next(line for line in text.splitlines() if line.startswith("| AIDS | sageᴾ |"))
    assert "60.00 ± 14.14 (2)" in sage
    gta_gcn = [line for line in text.splitlines() if line.startswith("| AIDS | gcn")]
    assert [line for line in gta_gcn if "99.00 ± 1.00 (3)" in line]
    assert not [line for line in gta_gcn if "gcnᴾ" in line]


def test_new_victims_from_a_defended_sweep_beat_more_old_seeds():
    runs = [record(s, 0.3, norm="none") for s in range(3)]
    runs += [defended(0, 0.95, "graphprot-r", model="gcn")]
    text = _render(runs)
    row = next(line for line in text.splitlines() if line.startswith("| AIDS | gcnᴾ | 90.00"))
    assert "95.00 ± 0.00 (1)" in row


def test_trigger_footprint_table_comes_from_the_bench_json(tmp_path):
    from gnnbackdoor.experiments.pages.graph_attacks import _footprint, _footprint_rows
    from gnnbackdoor.experiments.pages.template import PageTemplate

    assert _footprint_rows(tmp_path / "absent.json") == []
    row = {
        "dataset": "COLLAB", "trigger_nodes": 5, "mean_nodes": 74.49, "mean_edges": 2457.2,
        "mean_density": 0.508, "changed_edges": 4.92, "changed_pct_median": 0.613,
        "trigger_degree_change_pct": 24.31,
    }  # fmt: skip
    path = tmp_path / "footprint.json"
    path.write_text(json.dumps({"rows": [row]}))
    template = PageTemplate.load("graph_attacks")
    text = _footprint(template, _footprint_rows(path))
    assert "| COLLAB | 5 | 74.5 | 2457.2 | 0.51 | 4.92 | 0.61 | 24.3 |" in text
    assert "bench/trigger_footprint.py" in text
    assert _footprint(template, []) == ""
