"""The link_baselines page renders Table 3 and Table 5 from (synthetic) records, counts the rows
Link-Backdoor wins from the records, and lists baselines far from the paper's figures."""

from __future__ import annotations

from gnnbackdoor.experiments.pages import PAGES, load_pages
from gnnbackdoor.experiments.sweep import load_sweep


def record(model: str, attack: str, asr: float, dataset: str = "Cora", seed: int = 0,
           surrogate: str | None = None) -> dict:  # fmt: skip
    return {
        "task": "link",
        "dataset": dataset,
        "model": model,
        "attack": attack,
        "defense": None,
        "seed": seed,
        "overrides": {"attack.surrogate": surrogate} if surrogate else {},
        # pages select by the resolved configuration, never by the typed overrides
        "config": {"attack": {"p": 0.1, "m": 2, "Q": 5, "surrogate": surrogate}},
        "metrics": {
            "asr": asr,
            "amc": 0.6,
            "bpd": 0.02,
            "clean_auc": 0.9,
            "backdoored_auc": 0.88,
            "clean_model_asr": 0.97,
            "no_trigger_rate": 0.3,
            "num_eligible": 300,
        },
        "versions": {"git_commit": "abc"},
    }


def page(records: list[dict]) -> str:
    load_pages()
    return PAGES.get("link_baselines")(records)


def test_tables_wins_and_far_rows_come_from_records():
    attacks = {"erb": 0.5, "gta-link": 0.6, "r-backdoor": 0.7, "p-backdoor": 0.8}
    records = [record("gae", a, v, seed=s) for a, v in attacks.items() for s in (0, 1)]
    records += [record("gae", "link-backdoor", 0.9, seed=s) for s in (0, 1)]
    # VGAE: P-Backdoor ahead of Link-Backdoor
    records += [record("vgae", a, v) for a, v in attacks.items()]
    records += [record("vgae", "link-backdoor", 0.75)]
    text = page(records)
    assert "| Cora | gae | 50.00 ± 0.00 (2) | 58.33 |" in text  # ours, then the paper's ERB
    assert "Ours: on 1 of 2 rows with all five methods measured" in text
    assert "Cora/vgae (Link-Backdoor 75.00, P-Backdoor 80.00)" in text
    assert "n/a (not in the offline dataset mirror)" in text
    # the paper's own count, from its CSV: Link-Backdoor wins 14 of Cora/CiteSeer/Cora_ML's 15
    assert "The paper: on 14 of the same 15 rows." in text
    # GAE's R-Backdoor (70 vs the paper's 77.38) is within 10 points; ERB on VGAE is not
    far = text.split("more than 10 points")[1].split("## Table 5")[0]
    assert "| Cora | vgae | ERB | 50.00 | 61.22 | -11.22 |" in far
    assert "| Cora | gae | R-Backdoor |" not in far


def test_table5_uses_black_box_records_only():
    records = [
        record("deepwalk", "link-backdoor", 0.4, surrogate="gae"),
        record("deepwalk", "link-backdoor", 0.9),  # white-box: not Table 5
        record("node2vec", "link-backdoor", 0.5, dataset="CiteSeer", surrogate="gae"),
    ]
    text = page(records)
    table5 = text.split("## Table 5")[1]
    assert "| DeepWalk | Cora | gae | 40.00 ± 0.00 (1) | 52.99 |" in table5
    assert "| node2vec | CiteSeer | gae | 50.00 ± 0.00 (1) | 44.89 |" in table5
    assert "| DeepWalk | PubMed | not in the offline dataset mirror | n/a | 43.36 |" in table5


def test_sweep_covers_both_tables():
    specs = load_sweep("experiments/link_baselines.yaml")
    table3 = {(s.dataset, s.model, s.attack) for s in specs if not s.overrides}
    assert len(table3) == 3 * 5 * 5
    assert {s.seed for s in specs} == {0, 1, 2}
    table5 = {(s.dataset, s.model) for s in specs if set(s.overrides) == {"attack.surrogate"}}
    assert table5 == {(d, m) for d in ("Cora", "CiteSeer") for m in ("deepwalk", "node2vec")}


def test_the_far_tables_reading_comes_from_the_runs_own_diagnostics():
    from gnnbackdoor.experiments.pages.link_baselines import Reading, reading

    def run(asr, clean, floor=0.1):
        return {"metrics": {"asr": asr, "clean_model_asr": clean, "no_trigger_rate": floor}}

    assert reading([run(0.90, 0.85), run(0.80, 0.85)])[0] == Reading.ALONE
    assert reading([run(0.90, 0.40)])[0] == Reading.LEARNED
    category, text = reading([run(0.30, 0.80, floor=0.5)])
    assert category == Reading.WEAKENED and "no-trigger rate 50.00" in text
    assert reading([{"metrics": {}}]) == ("", "—")
