"""Page plumbing: selection by resolved configuration, templates, the files a page reads,
and every committed page equal to what its records and template give."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnnbackdoor.errors import UserError
from gnnbackdoor.experiments.pages import PAGES, load_pages, page_record_files, render_page
from gnnbackdoor.experiments.pages.common import (
    cell,
    differs,
    nested,
    provenance,
    resolved,
    where,
)
from gnnbackdoor.experiments.pages.template import PageTemplate

ROOT = Path(__file__).resolve().parents[2]


def run(seed: int, asr: float, overrides: dict | None = None, **settings) -> dict:
    return {
        "task": "graph",
        "dataset": "AIDS",
        "attack": "sba",
        "seed": seed,
        "overrides": overrides or {},
        "config": nested(settings),
        "metrics": {"asr": asr},
    }


def test_where_reads_the_resolved_configuration_never_the_overrides():
    typed = run(0, 0.9, {"attack.target_class": "0"}, **{"attack.target_class": 1})
    implicit = run(1, 0.8, **{"attack.target_class": 1})
    other = run(2, 0.1, {"attack.target_class": "1"}, **{"attack.target_class": 0})
    records = [typed, implicit, other]
    assert where(records, {"attack.target_class": 1}) == [typed, implicit]
    assert where(records, {"attack.target_class": 1.0}, seed=1) == [implicit]
    assert where(records, {"attack.target_class": (0, 1)}) == records
    assert where(records, attack=None) == []
    assert resolved(typed, "dataset") == "AIDS"
    # nested sections nest further; a missing field gives the default asked for
    deep = run(0, 0.5, **{"defense.recovery.lr": 0.01})
    assert resolved(deep, "defense.recovery.lr") == 0.01
    assert resolved(deep, "defense.recovery.epochs", default=20) == 20
    assert resolved(deep, "data.node_attributes") is False  # predates the field: its default


def test_true_is_not_one_and_missing_fields_do_not_differ():
    flag = run(0, 0.5, **{"attack.poison_validation": True, "attack.trigger_size": 1})
    assert where([flag], {"attack.trigger_size": True}) == []
    assert where([flag], {"attack.poison_validation": True}) == [flag]
    assert differs(flag, {"attack.trigger_size": 5, "attack.pattern": "erdos_renyi"}) == [
        "attack.trigger_size"
    ]


def test_cell_counts_every_selected_run_whatever_its_overrides():
    runs = [run(0, 0.9, {"train.lr": "0.01"}), run(1, 0.7)]
    assert cell(runs, "asr") == ("80.00 ± 14.14 (2)", pytest.approx(80.0))
    assert cell([], "asr")[0] == "—"


def test_template_fragments_notes_and_missing_values(tmp_path):
    template = PageTemplate(
        "# T\n<!-- note: for editors -->\n${a} and $$5\n"
        "<!-- fragment f -->\nx=${x}\n<!-- end -->\n",
        "t.md",
    )
    assert template.render(a="A") == "# T\nA and $5\n"
    assert template.fragment("f", x=3) == "x=3"
    with pytest.raises(UserError, match="needs a value for 'a'"):
        template.render()
    with pytest.raises(UserError, match="no fragment"):
        template.fragment("g")
    with pytest.raises(UserError, match="no template for page"):
        PageTemplate.load("nope", tmp_path)


def test_a_page_reads_only_its_folders_records_file(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("records.jsonl", "superseded.jsonl", "sub/records.jsonl"):
        (tmp_path / name).write_text("")
    assert page_record_files([tmp_path]) == [tmp_path / "records.jsonl"]
    with pytest.raises(UserError, match=r"no records\.jsonl"):
        page_record_files([tmp_path / "sub" / "missing"])


@pytest.mark.parametrize("name", ["clean_models", "link_backdoor", "graph_attacks", "graphprot",
                                  "graphprot-ablations", "gcleaner"])  # fmt: skip
def test_every_committed_page_is_what_its_records_give(name, monkeypatch):
    """A stale page (records added, template edited, page not rebuilt) fails here: run
    ``make pages``."""
    load_pages()
    monkeypatch.chdir(ROOT)
    committed = ROOT / "docs" / "reproduction" / f"{name.replace('-', '_')}.md"
    assert name in PAGES
    assert render_page(name) == committed.read_text()


def test_report_page_from_the_command_line(tmp_path, monkeypatch, capsys):
    from gnnbackdoor.cli import main

    monkeypatch.chdir(ROOT)
    out = tmp_path / "page.md"
    assert main(["report", "--page", "clean_models", "--out", str(out)]) == 0
    assert out.read_text() == (ROOT / "docs/reproduction/clean_models.md").read_text()
    assert main(["report", "--page", "clean_models", "--templates", str(tmp_path)]) == 2
    assert "no template for page 'clean_models'" in capsys.readouterr().err
    assert main(["report"]) == 2


def test_provenance_counts_records_per_machine():
    old = {"versions": {"git_commit": "abc"}}
    here = {
        "versions": {"cpu": "Xeon", "torch_cpu_capability": "AVX512", "cpu_flags": "fc7df03f53a7"}
    }
    avx2 = {
        "versions": {
            "cpu": "Xeon",
            "torch_cpu_capability": "AVX512",
            "numerics_env": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        }
    }
    sentence = provenance([old, old, here, avx2])["machines"]
    assert "2 with the machine not recorded" in sentence
    assert "1 on Xeon, AVX512, flags fc7df03f53a7" in sentence
    assert "1 on Xeon, AVX512, MKL_ENABLE_INSTRUCTIONS=AVX2" in sentence
