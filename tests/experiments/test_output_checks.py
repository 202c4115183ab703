"""Unusable output places and ``--paper`` CSVs: one line, exit 2, before any work."""

from __future__ import annotations

import os

import pytest

from gnnbackdoor.cli import main

RUN = ["run", "--task", "graph", "--dataset", "Motifs", "--model", "gcn", "--quiet"]
RUN += ["--set", "train.max_epochs=1"]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a run starts: every check must come first."""
    from gnnbackdoor.experiments import runner

    def never(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(runner, "run_all", never)


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gnnbackdoor: error:"), err
    for needle in needles:
        assert needle in err, err


def _places(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return {
        "an existing file": (a_file, "is a file"),
        "a folder under a file": (a_file / "sub", "cannot create"),
        "an unwritable folder": (locked / "sub", "cannot create"),
    }


@pytest.mark.parametrize(
    "place", ["an existing file", "a folder under a file", "an unwritable folder"]
)
@pytest.mark.parametrize("option", ["--out", "--save-model"])
def test_run_refuses_an_unusable_folder_before_training(tmp_path, capsys, no_work, place, option):
    if place == "an unwritable folder" and os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    path, needle = _places(tmp_path)[place]
    argv = [*RUN, "--out", str(tmp_path / "runs")]
    if option == "--out":
        argv[-1] = str(path)
    else:
        argv += ["--save-model", str(path)]
    assert main(argv) == 2
    _one_line_error(capsys, option, needle)


def test_sweep_checks_its_out_too(tmp_path, capsys, no_work):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--out", str(a_file), "--quiet"]) == 2
    _one_line_error(capsys, "--out", "is a file")


@pytest.fixture
def records(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    line = (
        '{"key": "k", "task": "graph", "dataset": "Motifs", "model": "gcn", "attack": null, '
        '"defense": null, "seed": 0, "overrides": {}, "config": {}, '
        '"metrics": {"clean_acc": 0.9}}\n'
    )
    (folder / "records.jsonl").write_text(line)
    return folder


def test_report_out_must_be_a_writable_file(records, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["report", str(records), "--out", str(a_file / "t.md")]) == 2
    _one_line_error(capsys, "--out", "is a file")
    assert main(["report", str(records), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "--out", "is a folder")
    assert main(["report", str(records), "--out", str(tmp_path / "new" / "t.md")]) == 0
    assert "Motifs" in (tmp_path / "new" / "t.md").read_text()


@pytest.mark.parametrize(
    ("csv_text", "needle"),
    [
        (None, "no such file"),
        ("", "holds no rows"),
        ("acc,asr\n91.0,99.0\n", "lacks column(s) dataset, model"),
        ("dataset,acc\nMotifs,91.0\n", "lacks column(s) model"),
        ("dataset,model,note\nMotifs,gcn,high\n", "no numeric figure column"),
        ("dataset,model,acc\nMotifs,GCN,91\nmotifs,gcn,92\n", "line 3 repeats"),
    ],
)
def test_report_refuses_a_paper_csv_it_cannot_match(records, tmp_path, capsys, csv_text, needle):
    paper = tmp_path / "paper.csv"
    if csv_text is not None:
        paper.write_text(csv_text)
    assert main(["report", str(records), "--paper", str(paper)]) == 2
    _one_line_error(capsys, "--paper", needle)


def test_report_paper_columns_must_exist(records, tmp_path, capsys):
    paper = tmp_path / "paper.csv"
    paper.write_text("dataset,model,acc\nMotifs,gcn,91\n")
    argv = ["report", str(records), "--paper", str(paper), "--paper-columns", "asr"]
    assert main(argv) == 2
    _one_line_error(capsys, "lacks column(s) asr")
    assert main(["report", str(records), "--paper", str(paper)]) == 0
    assert "| 91 |" in capsys.readouterr().out


def test_a_reader_that_leaves_early_ends_the_command_quietly(monkeypatch, capsys):
    """``gnnbackdoor ... | head``: a closed stdout is exit 141 (SIGPIPE's), not a traceback."""
    from gnnbackdoor import cli

    def write_into_a_closed_pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(cli.COMMANDS, "list", write_into_a_closed_pipe)
    assert cli.main(["list"]) == 141
    assert capsys.readouterr().err == ""
