"""What a newcomer trial found (issues #15 and #19), one test per kind: output paths, the
figure's main configuration per defense, held-out scoring, defended-only folders, the compact
summary of a large folder, ``--wide``, ``list``, missing data, and the smaller points."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from gnnbackdoor.cli import _build_parser, main
from gnnbackdoor.experiments.figures import main_rows
from gnnbackdoor.experiments.report import generic_report
from gnnbackdoor.experiments.summary import GLOSSARY, Format, build_rows, summary_report

UNWRITABLE = Path("/proc")  # exists, is a folder, and takes no new file, even from root

BEFORE = {"clean_acc": 1.0, "backdoored_acc": 0.98, "asr": 0.95, "clean_model_asr": 0.05}
AFTER = {"defended_acc": 0.9, "defended_asr": 0.2, "num_eval_graphs": 60, "num_classes": 3}


def _record(attack, defense, seed, overrides=None, config=None, **metrics):
    return {
        "key": f"{attack}-{defense}-{seed}-{sorted((overrides or {}).items())}",
        "task": "graph",
        "dataset": "Motifs",
        "model": "gin",
        "attack": attack,
        "defense": defense,
        "seed": seed,
        "overrides": dict(overrides or {}),
        "config": config or {},
        "metrics": {**BEFORE, **(AFTER if defense else {}), **metrics},
        "timings": {},
    }


def _write(folder: Path, records) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gnnbackdoor: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


# --- 1. every output path: checked before work, write errors one line, where it went -----


RUN = ["run", "--task", "graph", "--dataset", "Motifs", "--model", "gcn", "--quiet"]


@pytest.mark.parametrize(
    "argv",
    [
        [*RUN, "--out", str(UNWRITABLE / "runs")],
        [*RUN, "--out", "OUT", "--save-model", str(UNWRITABLE / "models")],
        ["sweep", "SWEEP", "--out", str(UNWRITABLE / "runs")],
        ["report", "DIR", "--out", str(UNWRITABLE / "x.md")],
        ["report", "DIR", "--out", str(UNWRITABLE / "deeper" / "x.md")],
        ["keys", "add", str(UNWRITABLE / "keys.txt")],
    ],
    ids=["run --out", "--save-model", "sweep --out", "report --out", "report deeper", "keys"],
)
def test_every_output_path_is_checked_before_work(tmp_path, capsys, monkeypatch, argv):
    from gnnbackdoor.experiments import runner

    monkeypatch.setattr(runner, "run_all", lambda *a, **k: pytest.fail("work started"))
    folder = _write(tmp_path / "dir", [_record("sba", None, 0)])
    sweep = tmp_path / "grid.yaml"
    sweep.write_text("task: graph\ndataset: Motifs\nmodel: gcn\n")
    swap = {"OUT": str(tmp_path / "out"), "SWEEP": str(sweep), "DIR": str(folder)}
    assert main([swap.get(a, a) for a in argv]) == 2
    _one_line(capsys, str(UNWRITABLE))
    assert not (tmp_path / "out").exists()  # nothing made before the check


def test_figures_folder_is_checked_and_write_errors_are_one_line(tmp_path, capsys, monkeypatch):
    folder = _write(tmp_path / "dir", [_record("sba", None, 0)])
    (folder / "figures").write_text("a file where the figures go")
    assert main(["report", str(folder), "--figures"]) == 2
    _one_line(capsys, "--figures", "is a file")

    def refuse(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", refuse)
    assert main(["report", str(folder), "--out", str(tmp_path / "r.md")]) == 2
    _one_line(capsys, "--out", "No space left on device")


def test_report_out_says_where_it_wrote(tmp_path, capsys):
    folder = _write(tmp_path / "dir", [_record("sba", None, 0)])
    target = tmp_path / "new" / "deeper" / "x.md"
    assert main(["report", str(folder), "--out", str(target)]) == 0
    assert target.read_text().startswith("### graph: attacks")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == f"report written to {target}"


# --- 2. the defense figure: each defense's own main configuration -------------------------


def test_defense_figure_keeps_a_defense_run_with_its_own_setting():
    records = [_record("sba", "graphprot-tf", s) for s in (0, 1)]
    records += [_record("sba", "gcleaner", s, {"defense.holding_rate": "0.1"}) for s in (0, 1)]
    records += [_record("sba", "gcleaner", 0, {"defense.holding_rate": "0.2"})]
    rows = [r for r in build_rows(records) if r.kind == "defense"]
    shown, left_out = main_rows(rows)
    assert {(r.defense, r.settings) for r in shown} == {
        ("graphprot-tf", ""),
        ("gcleaner", "defense.holding_rate=0.1"),  # its most common configuration
    }
    assert left_out == 1


# --- 3. before-figures scored on the graphs the defender did not hold out -----------------


def test_held_out_scoring_is_footnoted():
    records = [
        _record("sba", None, 0),
        _record("sba", "graphprot-tf", 0),
        _record("sba", "gcleaner", 0, num_eval_graphs=30, num_defender_graphs=30),
    ]
    text = summary_report(records)
    row = next(line for line in text.splitlines() if "| gcleaner" in line)
    assert "gcleaner *" in row
    assert (
        "* gcleaner on Motifs/gin: before and after scored on the 30 evaluation graphs the "
        "defender did not hold out (30 held out" in text
    )
    assert "graphprot-tf *" not in text


# --- 4. a folder of defended runs only: an attack section, every metric defined ---------


def test_defended_only_folder_gets_an_attack_section_and_full_glossary():
    records = [
        _record("sba", defense, seed, {"defense.x": "1"} if defense == "gcleaner" else {})
        for defense in ("graphprot-tf", "gcleaner")
        for seed in (0, 1)
    ]
    text = summary_report(records)
    assert "### graph: attacks" in text
    attack = next(line for line in text.splitlines() if line.startswith("| Motifs | gin | sba †"))
    assert "| 2 |" in attack  # two seeds, not four (each seed counted once)
    assert "100.0 ± 0.0 → 98.0 ± 0.0" in attack and "95.0" in attack
    assert "defended runs' own before-defense figures" in text
    glossary = text.split("Glossary:")[1]
    for key in ("acc", "asr", "clean_model_asr", "defended_asr", "defended_acc", "floor"):
        assert GLOSSARY[key] in glossary
    # an undefended run of the attack wins over the derived row
    plain = summary_report([*records, _record("sba", None, 0)])
    assert "†" not in plain


def test_defense_table_alone_defines_asr_and_acc():
    text = summary_report([_record(None, "graphprot-tf", 0)])
    glossary = text.split("Glossary:")[1]
    assert GLOSSARY["asr"] in glossary and GLOSSARY["acc"] in glossary


# --- 5. a large folder stays compact --------------------------------------------------------


def test_summary_shows_the_main_configuration_per_group_and_counts_the_rest():
    records = [_record("sba", "graphprot-tf", s) for s in (0, 1, 2)]
    records += [
        _record("sba", "graphprot-tf", 0, {"defense.num_subgraphs": str(n)}) for n in range(9)
    ]
    text = summary_report(records)
    rows = [line for line in text.splitlines() if "| graphprot-tf" in line]
    assert len(rows) == 1 and "| 3 |" in rows[0]  # the three-seed default configuration
    assert "9 other configuration(s)" in text and "`--wide` shows them all" in text
    assert len(list(csv.DictReader(io.StringIO(summary_report(records, Format.CSV))))) == 10 + 1


# --- 6. --wide: settings from the resolved config, ± only with two seeds, csv ---------------


def test_wide_says_settings_resolved_and_no_plus_minus_for_one_seed(tmp_path, capsys):
    config = {"attack": {"injection_ratio": 0.1}}
    records = [
        _record("sba", None, 0, {"attack.injection_ratio": "0.10"}, config),
        _record("sba", None, 1, {"attack.injection_ratio": ".1"}, config),
        _record("gta", None, 0, asr=0.9411764705882353),
    ]
    text = generic_report(records)
    header = text.splitlines()[0]
    assert "settings" in header and "overrides" not in header
    sba = next(line for line in text.splitlines() if "| sba |" in line)
    assert "attack.injection_ratio=0.1 | 2 |" in sba and "±" in sba  # one group, two seeds
    gta = next(line for line in text.splitlines() if "| gta |" in line)
    assert "±" not in gta
    folder = _write(tmp_path / "dir", records)
    assert main(["report", str(folder), "--wide", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert next(r for r in rows if r["attack"] == "gta")["asr"] == "0.941176"


# --- 7. list: a description per variant, settings with types, defaults and ranges ----------


def test_list_gives_each_variant_its_own_description(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    described = {}
    for line in lines:
        if line.startswith("  ") and "[" in line:
            name, text = line.split(maxsplit=1)
            described[name] = text
    for family in (
        ["graphprot", "graphprot-r", "graphprot-t", "graphprot-tf"],
        ["link-backdoor", "link-backdoor-no-inj"],
        ["gae", "vgae"],
    ):
        texts = [described[n] for n in family]
        assert len(set(texts)) == len(texts), texts
    starts = {line.index("[") for line in lines if line.startswith("  ") and "[" in line}
    assert len(starts) == 1  # one column, whatever the longest name


def test_list_settings_walks_nested_sections(capsys):
    assert main(["list", "--settings", "gcleaner"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("defense.recovery.lr "))
    assert "a finite number > 0" in line and line.split()[-1] == "0.01"
    assert "defense.holding_rate" in out and "in (0, 1]" in out
    assert main(["list", "--settings", "train-graph"]) == 0
    assert "train.patience" in capsys.readouterr().out
    assert main(["list", "--settings", "no-such"]) == 2
    _one_line(capsys, "no-such")


# --- 8. missing data: what the user gave, the files, no progress lines ----------------------


@pytest.mark.parametrize("given", ["flag", "variable"])
def test_missing_data_names_what_the_user_gave_and_prints_nothing_before(
    tmp_path, capsys, monkeypatch, given
):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["run", "--task", "graph", "--dataset", "MUTAG", "--model", "gin"]
    argv += ["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    if given == "flag":
        monkeypatch.delenv("GNNBACKDOOR_DATA_MIRROR", raising=False)
        argv += ["--data-mirror", str(empty)]
    else:
        monkeypatch.setenv("GNNBACKDOOR_DATA_MIRROR", str(empty))
    assert main(argv) == 2
    named = f"--data-mirror {empty}" if given == "flag" else f"GNNBACKDOOR_DATA_MIRROR={empty}"
    _one_line(capsys, named, "MUTAG_A.txt")
    assert not (tmp_path / "out").exists()


# --- 9. the smaller points --------------------------------------------------------------------


def test_one_progress_line_per_run_and_no_out_folder_on_a_bad_setting(tmp_path, capsys):
    out = tmp_path / "out"
    argv = [*RUN, "--out", str(out), "--set", "train.max_epochs=0"]
    argv.remove("--quiet")
    assert main(argv) == 2
    assert not out.exists()
    capsys.readouterr()
    argv = [*RUN, "--out", str(out), "--set", "train.max_epochs=1"]
    argv.remove("--quiet")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert sum("Motifs gcn" in line and line.startswith("run ") for line in err.splitlines()) == 1
    assert (out / "records.jsonl").exists()


def test_help_texts():
    parser = _build_parser()
    assert "``" not in parser.format_help()
    run = parser._subparsers._group_actions[0].choices["run"]
    threads = next(a for a in run._actions if "--threads" in a.option_strings)
    assert "default" in threads.help


def test_a_write_error_during_a_run_is_one_line(tmp_path, capsys, monkeypatch):
    from gnnbackdoor.experiments import records

    def full(out_dir, record):
        raise OSError(28, "No space left on device", str(out_dir / "records.jsonl"))

    monkeypatch.setattr(records, "append_record", full)
    monkeypatch.setattr("gnnbackdoor.experiments.runner.append_record", full)
    argv = [*RUN, "--out", str(tmp_path / "out"), "--set", "train.max_epochs=1"]
    assert main(argv) == 2
    _one_line(capsys, "--out", "No space left on device")
