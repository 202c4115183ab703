"""The Link-Backdoor page and black-box matrix render from (synthetic) records."""

from __future__ import annotations

import math

from gnnbackdoor.experiments.blackbox_matrix import build_matrix, main, plot
from gnnbackdoor.experiments.pages import PAGES, load_pages
from gnnbackdoor.experiments.pages.common import nested
from gnnbackdoor.experiments.records import append_record

METRICS = {
    "clean_auc": 0.9,
    "bpd": 0.01,
    "asr": 0.9,
    "amc": 0.7,
    "clean_model_asr": 0.5,
    "no_trigger_rate": 0.2,
    "num_eligible": 300,
}


def record(model: str, seed: int, surrogate: str | None = None, asr: float = 0.9) -> dict:
    return {
        "key": f"{model}-{seed}-{surrogate}",
        "task": "link",
        "dataset": "Cora",
        "model": model,
        "attack": "link-backdoor",
        "defense": None,
        "seed": seed,
        "overrides": {},
        "config": nested(
            {"attack.p": 0.1, "attack.surrogate": surrogate, "attack.warmup_epochs": 0}
        ),
        "metrics": {**METRICS, "asr": asr},
        "timings": {"per_update_s": 0.01, "total_s": 30.0},
        "versions": {"git_commit": "abc"},
    }


def test_matrix_and_page(tmp_path):
    records = [record("gae", 0), record("vgae", 0)]
    records += [record("vgae", 0, "gae", asr=0.8), record("gae", 0, "vgae", asr=0.7)]
    matrix = build_matrix(records, "Cora", ["gae", "vgae"])
    assert matrix.asr[0][1] == 0.8 and matrix.asr[1][0] == 0.7
    assert math.isnan(matrix.asr[0][0])
    assert abs(matrix.drop() - 0.15) < 1e-9
    assert plot(matrix, tmp_path / "m.png").stat().st_size > 0
    load_pages()
    text = PAGES.get("link_backdoor")(records)
    assert "| Cora | gae |" in text and "Black-box" in text
    for r in records:
        append_record(tmp_path / "runs", r)
    assert main([str(tmp_path / "runs"), "--png", str(tmp_path / "b.png")]) == 0
