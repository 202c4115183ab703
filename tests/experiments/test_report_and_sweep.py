"""Reports are computed from records only; sweeps expand grids into run specs."""

from __future__ import annotations

import math

import pytest

from gnnbackdoor.errors import ConfigError, UserError
from gnnbackdoor.experiments.pages import PAGES, load_pages
from gnnbackdoor.experiments.report import (
    aggregate,
    fmt,
    generic_report,
    is_fraction,
    mean_std,
    reference_table,
)
from gnnbackdoor.experiments.sweep import expand_block, load_sweep


def _record(seed, auc, dataset="Cora", model="gae", **extra):
    return {
        "task": "link",
        "dataset": dataset,
        "model": model,
        "attack": None,
        "defense": None,
        "seed": seed,
        "overrides": extra,
        "metrics": {"clean_auc": auc, "clean_epochs": 100},
    }


def test_mean_and_sample_std():
    mean, std = mean_std([0.9, 0.8, 0.7])
    assert mean == pytest.approx(0.8) and std == pytest.approx(0.1)
    assert mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in mean_std([float("nan")]))


def test_fmt_and_fractions():
    assert fmt(0.8, 0.1, 100) == "80.00 ± 10.00"
    assert fmt(float("nan")) == "n/a"
    assert is_fraction("asr") and is_fraction("bpd") and is_fraction("clean_auc")
    assert not is_fraction("per_update_s") and not is_fraction("clean_epochs")
    assert not is_fraction("num_targets") and not is_fraction("queries")


def test_aggregate_groups_by_configuration_and_overrides():
    records = [_record(0, 0.9), _record(1, 0.8), _record(0, 0.5, **{"train.lr": "0.1"})]
    groups = aggregate(records)
    assert len(groups) == 2
    plain = groups[("link", "Cora", "gae", "-", "-", "")]
    assert plain["n"] == 2 and plain["metrics"]["clean_auc"][0] == pytest.approx(0.85)


def test_generic_report_puts_the_paper_beside_ours(tmp_path):
    paper = tmp_path / "paper.csv"
    paper.write_text("dataset,model,benign_auc\nCora,GAE,90.67\nCora_ML,VGAE,89.63\n")
    records = [_record(0, 0.9), _record(1, 0.8), _record(0, 0.7, "Cora_ML_LCC", "vgae")]
    text = generic_report(records, paper_csv=paper)
    lines = text.splitlines()
    assert "paper benign_auc" in lines[0]
    assert any(
        "| Cora | gae |" in line and "85.00 ± 7.07" in line and "90.67" in line for line in lines
    )
    # the paper's Cora_ML is the largest component, our Cora_ML_LCC
    assert any("Cora_ML_LCC" in line and "89.63" in line for line in lines)
    with pytest.raises(UserError):
        generic_report([])


def test_reference_tables_ship_with_the_package():
    rows = reference_table("link_backdoor_table3.csv")
    assert len(rows) == 25 and rows[0]["dataset"] == "Cora"
    with pytest.raises(UserError):
        reference_table("nope.csv")


def test_clean_models_page_renders_from_records_only():
    load_pages()
    records = [_record(0, 0.9), _record(1, 0.92), _record(2, 0.5)]
    for r, lr in zip(records, (0.01, 0.01, 0.001), strict=True):
        r["config"] = {"train": {"lr": lr}}
    text = PAGES.get("clean_models")(records)
    assert "| Cora | gae | 91.00 ± 1.41 (2) | 90.67 | +0.33 |" in text
    assert "Provenance" in text and "2 records" in text


def test_expand_block_is_the_product_of_its_lists():
    specs = expand_block(
        {
            "task": "graph",
            "datasets": ["AIDS", "DHFR"],
            "models": "gin",
            "attacks": [None, "sba"],
            "seeds": [0, 1],
            "set": {"train.patience": 5},
            "grid": {"attack.trigger_size": [3, 4]},
        }
    )
    assert len(specs) == 2 * 1 * 2 * 2 * 2
    assert specs[0].overrides == {"train.patience": "5", "attack.trigger_size": "3"}
    flagged = expand_block(
        {
            "task": "graph",
            "datasets": "AIDS",
            "models": "gin",
            "set": {"data.node_attributes": True},
        }
    )
    assert flagged[0].overrides == {"data.node_attributes": "true"}  # as the CLI spells it
    with pytest.raises(ConfigError, match="unknown keys"):
        expand_block({"task": "graph", "datasets": ["AIDS"], "models": ["gin"], "sed": [0]})


def test_load_sweep_errors(tmp_path):
    with pytest.raises(UserError, match="no sweep file"):
        load_sweep(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: 3\n")
    with pytest.raises(ConfigError, match="list 'runs'"):
        load_sweep(bad)
