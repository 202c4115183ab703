"""The clean_models page judges issue 14 item 1's victim targets on batch-norm victims only,
and marks the older graph victims (†) without judging them."""

from __future__ import annotations

from gnnbackdoor.experiments.pages import PAGES, load_pages
from gnnbackdoor.experiments.pages.clean_models import victim_targets
from gnnbackdoor.experiments.pages.common import nested


def clean(dataset: str, model: str, acc: float, seed: int = 0, norm: str = "batch_norm",
          attributes: bool = False) -> dict:  # fmt: skip
    return {
        "task": "graph",
        "dataset": dataset,
        "model": model,
        "attack": None,
        "defense": None,
        "seed": seed,
        "overrides": {},
        "config": nested({"model.norm": norm, "data.node_attributes": attributes}),
        "metrics": {"clean_acc": acc, "clean_epochs": 50},
        "versions": {"git_commit": "abc", "torch": "t", "torch_geometric": "p"},
    }


def _verdicts(rows, paper=None) -> dict[str, tuple[str, str]]:
    return {t: (v, d) for t, v, d in victim_targets(rows, paper or {})}


def test_floors_pass_fail_and_no_records():
    rows = {
        ("NCI1", "gin"): [clean("NCI1", "gin", 0.81), clean("NCI1", "gin", 0.80, seed=1)],
        ("PROTEINS", "gin"): [clean("PROTEINS", "gin", 0.70)],
    }
    got = _verdicts(rows)
    assert got["GIN NCI1 ≥ 80"][0] == "pass"
    assert got["GIN PROTEINS ≥ 74"] == ("fail", "PROTEINS/gin 70.0")
    assert got["every model DHFR ≥ 75"] == ("no records yet", "0 of 4 rows measured")


def test_old_victims_are_not_judged():
    rows = {("NCI1", "gin"): [clean("NCI1", "gin", 0.95, norm="none")]}
    assert _verdicts(rows)["GIN NCI1 ≥ 80"][0] == "no records yet"


def test_majority_share_and_paper_gap():
    rows = {
        ("AIDS", "gcn"): [clean("AIDS", "gcn", 0.79)],  # below AIDS's 80 % majority
        ("NCI1", "gcn"): [clean("NCI1", "gcn", 0.66)],
    }
    got = _verdicts(rows, {("AIDS", "gcn"): 92.4, ("NCI1", "gcn"): 67.5})
    verdict, detail = got["no victim below its dataset's majority share"]
    assert verdict == "fail" and detail == "AIDS/gcn 79.0"
    verdict, detail = got["GraphProt Table 1 clean accuracy matched within 2 points or beaten"]
    assert verdict == "fail" and detail == "AIDS/gcn 79.0"  # NCI1: 66.0 is within 2 of 67.5


def test_page_marks_old_rows_and_prints_the_targets():
    load_pages()
    records = [
        clean("DHFR", m, 0.8, seed=s) for m in ("gcn", "gat", "gin", "sage") for s in range(3)
    ]
    records += [clean("NCI1", "gin", 0.7, norm="none")]
    text = PAGES.get("clean_models")(records)
    assert "| NCI1 | gin† | 70.00 ± 0.00 (1)" in text
    assert "| DHFR | gin | 80.00 ± 0.00 (3)" in text
    assert "- every model DHFR ≥ 75: **pass**" in text
    assert "- GIN NCI1 ≥ 80: **no records yet**" in text


def test_cross_validated_victims_have_their_own_section():
    load_pages()

    def fold(acc: float, k: int) -> dict:
        record = clean("PROTEINS", "gin", acc)
        record["config"]["data"].update({"cv_folds": 10, "cv_fold": k})
        return record

    records = [clean("PROTEINS", "gin", 0.70, seed=s) for s in range(3)]
    records += [fold(0.76, k) for k in range(5)] + [fold(0.72, k) for k in range(5, 10)]
    text = PAGES.get("clean_models")(records)
    # the 3-seed row holds the split runs only; the folds make their own row
    assert "| PROTEINS | gin | 70.00 ± 0.00 (3)" in text
    assert "| PROTEINS | gin | 74.00 ± 2.11 (10) | 10 of 10 | 74.00 | pass | 76.20 |" in text
    assert "- GIN PROTEINS ≥ 74: **fail** (PROTEINS/gin 70.0)" in text
