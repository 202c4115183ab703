"""The re-keying migration (no record lost, duplicates collapsed keeping the earliest,
idempotent), the committed records being at the current identity, and every committed
sweep resolving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gnnbackdoor.cli import main
from gnnbackdoor.experiments.migrate import MigrationError, migrate, migrate_file
from gnnbackdoor.experiments.records import (
    RECORDS_FILE,
    SUPERSEDED_FILE,
    read_records,
    record_key,
)
from gnnbackdoor.experiments.runner import RunSpec, identify
from gnnbackdoor.experiments.sweep import load_sweep

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "experiments").glob("*.yaml"))


def _second(created: str) -> str:
    return created[17:19]


def _old_record(created: str, seed: int = 0, **train) -> dict:
    """A record as the old runner wrote it: a key of the typed text, no runtime section,
    and no field the config classes gained later (here ``train.subgraph_keep``)."""
    train_config = {
        "batch_size": 64,
        "eval_batch_size": 512,
        "lr": 0.005,
        "max_epochs": 2,
        "patience": 40,
        "weight_decay": 0.0,
        "subgraph_augmentation": 0.0,
        # fields added later (issue 14), stored as today's code writes them: only
        # ``subgraph_keep`` is missing and filled
        "lr_decay_every": 50,
        "lr_decay_factor": 0.5,
        "selection": "val_acc",
        "selection_window": 1,
        **train,
    }
    return {
        "key": f"old{_second(created)}",
        "task": "graph",
        "dataset": "Motifs",
        "model": "gcn",
        "attack": None,
        "defense": None,
        "seed": seed,
        "overrides": {"max_epochs": "2"} if seed else {"train.max_epochs": "2"},
        "config": {
            "data": {
                "train_fraction": 0.8,
                "val_fraction": 0.1,
                "link_val": 0.05,
                "link_test": 0.1,
                "node_attributes": False,
                "cv_folds": 0,
                "cv_fold": 0,
            },
            "train": train_config,
            "model": {"hidden_channels": 64, "num_layers": 3, "dropout": 0.5, "pool": "mean"},
            "attack": None,
            "defense": None,
        },
        "metrics": {"clean_acc": 0.5},
        "created": created,
    }


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_migration_rekeys_as_the_runner_collapses_duplicates_and_is_idempotent(tmp_path):
    model = identify(RunSpec("graph", "Motifs", "gcn")).config["model"]
    records = [
        _old_record("2026-01-01T00:00:02+00:00"),  # same run, typed differently, later
        _old_record("2026-01-01T00:00:01+00:00"),
        _old_record("2026-01-01T00:00:03+00:00", seed=1),
    ]
    for record in records:
        record["config"]["model"] = model
    path = tmp_path / "run" / RECORDS_FILE
    _write(path, records)
    report = migrate_file(path, legacy_threads=1)
    assert (report.records, report.rekeyed, len(report.superseded)) == (3, 3, 1)
    assert report.filled == {"train.subgraph_keep": 3}
    kept = read_records(path)
    assert [_second(r["created"]) for r in kept] == ["01", "03"]  # the earliest of the two stays
    spec = RunSpec("graph", "motifs", "GCN", seed=0, overrides={"max_epochs": "2"})
    assert kept[0]["key"] == identify(spec, runtime={"threads": 1}).key
    assert kept[0]["key"] == record_key(kept[0])
    assert kept[0]["config"]["runtime"] == {"threads": 1}
    assert kept[0]["migration"]["original_key"] == "old01"
    assert "train.subgraph_keep=0.2" in kept[0]["migration"]["filled_defaults"]
    (superseded,) = [json.loads(line) for line in (path.parent / SUPERSEDED_FILE).open()]
    assert _second(superseded["created"]) == "02" and superseded["key"] == kept[0]["key"]
    assert _second(superseded["superseded_by"]["created"]) == "01"
    # no record lost; a second run changes nothing
    before = path.read_bytes(), (path.parent / SUPERSEDED_FILE).read_bytes()
    again = migrate_file(path, legacy_threads=1)
    assert (again.unchanged, again.written, again.superseded) == (2, False, [])
    assert (path.read_bytes(), (path.parent / SUPERSEDED_FILE).read_bytes()) == before


def test_migration_refuses_values_the_current_code_does_not_reproduce(tmp_path):
    record = _old_record("2026-01-01T00:00:01+00:00", no_such_field=3)
    path = tmp_path / RECORDS_FILE
    _write(path, [record])
    with pytest.raises(MigrationError, match=r"record 1 \(key old01\).*no_such_field"):
        migrate_file(path)
    assert json.loads(path.read_text())["key"] == "old01"  # untouched


def test_migration_command_reports_and_exits_2_on_bad_input(tmp_path, capsys):
    assert main(["records", "migrate", str(tmp_path / "none")]) == 2
    assert "no records file or folder" in capsys.readouterr().err
    path = tmp_path / RECORDS_FILE
    path.write_text("42\n")
    assert main(["records", "migrate", str(tmp_path)]) == 2
    assert f"{path}:1: line is a JSON int" in capsys.readouterr().err


def test_committed_records_are_at_the_current_identity():
    """Every committed record's key is what the current code computes from its resolved
    configuration; after a change of configuration classes, run
    ``gnnbackdoor records migrate results results/archive/*.jsonl``."""
    paths = [REPO / "results", *sorted((REPO / "results" / "archive").glob("*.jsonl"))]
    text = migrate(paths, dry_run=True)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "/" in line]
    assert rows
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        _file, records, rekeyed, completed, unchanged, superseded, _written = cells
        assert (rekeyed, completed, superseded) == ("0", "0", "0"), row
        assert records == unchanged, row


@pytest.mark.parametrize("sweep", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_committed_sweep_resolves(sweep, tmp_path):
    specs = load_sweep(sweep)
    if not specs:  # a pending sweep (runs: []) keeps its blocks commented below "# runs:"
        lines = sweep.read_text().splitlines()
        assert "# runs:" in lines, f"{sweep.name}: no runs and no commented blocks"
        body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
        pending = tmp_path / sweep.name
        pending.write_text("\n".join(body[lines.index("# runs:") :]) + "\n")
        specs = load_sweep(pending)
    assert specs
    keys = [identify(spec).key for spec in specs]
    assert all(len(key) == 16 for key in keys)


@pytest.mark.parametrize("surrogate", ["gae", None])
def test_link_backdoor_records_before_the_black_box_settings_keep_the_old_protocol(surrogate):
    """Black-box records older than ``blackbox_trigger``/``blackbox_target`` ran the
    clean-surrogate trigger on a target trained from scratch: they get those values, not
    today's defaults; white-box records (which read neither) get the defaults."""
    from gnnbackdoor.experiments.migrate import migrate_record

    record = {
        "key": "old",
        "task": "link",
        "dataset": "SBM",
        "model": "gae",
        "attack": "link-backdoor",
        "defense": None,
        "seed": 0,
        "config": {"attack": {"p": 0.1, "surrogate": surrogate}},
    }
    migrated, filled = migrate_record(record)
    attack = migrated["config"]["attack"]
    if surrogate:
        assert (attack["blackbox_trigger"], attack["blackbox_target"]) == (
            "clean-surrogate",
            "scratch",
        )
        assert len(migrated["migration"]["legacy_values"]) == 2
    else:
        assert (attack["blackbox_trigger"], attack["blackbox_target"]) == (
            "backdoored-surrogate",
            "pretrained",
        )
        assert 'attack.blackbox_target="pretrained"' in filled
    assert migrate_record(migrated)[0] == migrated  # idempotent
