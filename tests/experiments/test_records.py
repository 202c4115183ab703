"""Run identity (one key per resolved run, whatever was typed) and the records file (torn
tails moved aside, malformed lines stop with file:line, undefined metrics as null)."""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from gnnbackdoor.cli import main
from gnnbackdoor.experiments.records import (
    NUMERICS_ENV_VARS,
    RECORDS_FILE,
    RecordsFileError,
    append_record,
    canonical,
    group_key,
    iter_record_files,
    read_records,
    record_key,
    run_key,
    versions,
)
from gnnbackdoor.experiments.runner import RunSpec, identify, run_all
from gnnbackdoor.models.train_graph import GraphTrainConfig

REPO = Path(__file__).resolve().parents[2]
FAST = {"train.max_epochs": "2", "train.patience": "2"}


# -- identity ------------------------------------------------------------------------------


def _key(dataset="Motifs", model="gcn", **overrides) -> str:
    return RunSpec("graph", dataset, model, seed=0, overrides=overrides).key()


def test_equivalent_specs_give_one_key():
    base = _key(**{"train.max_epochs": "2"})
    assert _key(max_epochs="2") == base  # bare key routed to its one section
    assert _key(dataset="motifs", model="GCN", **{"train.max_epochs": "2"}) == base  # names
    assert _key(**{"train.max_epochs": "2", "train.lr": "5e-3"}) == base  # lr's default, spelled
    default = GraphTrainConfig()
    explicit = {f"train.{name}": str(getattr(default, name)) for name in ("patience", "lr")}
    assert _key(**explicit) == _key()  # an explicit default equals an omitted one
    assert _key(**{"train.max_epochs": "3"}) != base
    assert RunSpec("graph", "Motifs", "gcn", seed=1).key() != _key()


def test_the_key_covers_the_resolved_config_and_the_thread_count():
    spec = RunSpec("graph", "Motifs", "gin", attack="sba", seed=0, overrides={"trigger_size": "4"})
    identity = identify(spec)
    config = identity.config
    assert set(config) == {"data", "train", "model", "attack", "defense", "runtime"}
    assert config["attack"]["trigger_size"] == 4 and config["defense"] is None
    assert config["runtime"] == {"threads": torch.get_num_threads()}
    assert identity.attack == "sba" and identity.dataset == "Motifs"
    assert run_key("graph", "Motifs", identity.model, "sba", None, 0, config) == identity.key
    other = identify(spec, runtime={"threads": torch.get_num_threads() + 1})
    assert other.key != identity.key and other.config["attack"] == config["attack"]


class _Colour(enum.Enum):
    RED = "red"


@dataclass
class _Inner:
    lr: float = 0.01
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class _Outer:
    colour: _Colour = _Colour.RED
    inner: _Inner = field(default_factory=_Inner)
    path: Path = Path("a/b")


def test_canonical_writes_nested_sections_enums_and_tuples_as_json():
    assert canonical(_Outer()) == {
        "colour": "red",
        "inner": {"lr": 0.01, "sizes": [1, 2]},
        "path": "a/b",
    }
    assert canonical({"x": torch.tensor(2.5), "n": float("nan")}, nonfinite_as_null=True) == {
        "x": 2.5,
        "n": None,
    }
    with pytest.raises(ValueError, match="non-finite"):
        canonical({"n": float("inf")})
    assert run_key("graph", "D", "m", None, None, 0, {"s": _Outer()}) == run_key(
        "graph", "D", "m", None, None, 0, {"s": canonical(_Outer())}
    )


def test_equivalent_specs_run_once(tmp_path, offline_location):
    specs = [
        RunSpec("graph", "Motifs", "gcn", seed=0, overrides=FAST),
        RunSpec("graph", "motifs", "GCN", seed=0, overrides={"max_epochs": "2", "patience": "2"}),
    ]
    written = run_all(specs, tmp_path, offline_location)
    assert len(written) == 1
    record = written[0]
    assert record_key(record) == record["key"]
    assert record["config"]["runtime"] == {"threads": torch.get_num_threads()}
    explicit = {**FAST, "train.lr": str(GraphTrainConfig().lr)}
    again = RunSpec("graph", "Motifs", "gcn", seed=0, overrides=explicit)
    assert run_all([again], tmp_path, offline_location) == []
    assert len(read_records(tmp_path)) == 1


def test_group_key_ignores_the_seed_only():
    a, b = (identify(RunSpec("graph", "Motifs", "gcn", seed=s)) for s in (0, 1))
    records = [{**vars(i), "config": i.config} for i in (a, b)]
    assert a.key != b.key and group_key(records[0]) == group_key(records[1])
    other = identify(RunSpec("graph", "Motifs", "gcn", overrides={"train.lr": "0.1"}))
    assert group_key(vars(other)) != group_key(records[0])


# -- the records file ----------------------------------------------------------------------


def _record(seed: int, **metrics) -> dict:
    config = {"runtime": {"threads": 1}}
    record = {
        "task": "link",
        "dataset": "SBM",
        "model": "gae",
        "attack": None,
        "defense": None,
        "seed": seed,
        "config": config,
        "metrics": metrics or {"clean_auc": 0.9},
        "overrides": {},
    }
    record["key"] = record_key(record)
    return record


def _write(folder: Path, *lines: bytes, end: bytes = b"\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORDS_FILE
    path.write_bytes(b"\n".join(lines) + end)
    return path


def _line(record: dict) -> bytes:
    return json.dumps(record).encode()


def test_torn_tail_is_ignored_by_readers_and_moved_aside_before_an_append(tmp_path, caplog):
    good = _line(_record(0))
    path = _write(tmp_path, good, good[:40], end=b"")
    with caplog.at_level(logging.WARNING):
        assert [r["seed"] for r in read_records(tmp_path)] == [0]
    assert "torn last line" in caplog.text
    assert path.read_bytes().endswith(good[:40])  # a reader does not touch the file
    append_record(tmp_path, _record(1))
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3  # two whole lines, nothing appended onto
    assert [r["seed"] for r in read_records(tmp_path)] == [0, 1]
    (aside,) = tmp_path.glob(f"{RECORDS_FILE}.torn-*")
    assert aside.read_bytes() == good[:40]
    assert list(iter_record_files([tmp_path])) == [path]  # the torn bytes are not records


def test_a_run_into_a_folder_with_a_torn_tail_moves_it_aside(tmp_path, offline_location):
    path = _write(tmp_path, _line(_record(0)), b'{"key": "7', end=b"")
    spec = RunSpec("link", "SBM", "gae", seed=0, overrides={"max_epochs": "1"})
    assert len(run_all([spec], tmp_path, offline_location)) == 1
    assert [r["seed"] for r in read_records(tmp_path)] == [0, 0]
    assert path.read_bytes().count(b"\n") == 2
    (aside,) = tmp_path.glob(f"{RECORDS_FILE}.torn-*")
    assert aside.read_bytes() == b'{"key": "7'


def test_a_complete_last_record_without_newline_is_kept(tmp_path):
    path = _write(tmp_path, _line(_record(0)), end=b"")
    assert len(read_records(tmp_path)) == 1
    append_record(tmp_path, _record(1))
    assert [r["seed"] for r in read_records(tmp_path)] == [0, 1]
    assert not list(tmp_path.glob("*.torn-*")) and path.read_bytes().count(b"\n") == 2


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"this is not json", "not JSON"),
        (b"\xff\xfe\x00\x81binary", "not UTF-8"),
        (b"42", "a JSON int, not a record object"),
        (b"[1, 2]", "a JSON list"),
        (b"{}", "without the record fields key, task"),
        (
            b'{"key": 3, "task": "link", "dataset": "SBM", "model": "gae", "attack": null, '
            b'"defense": null, "seed": 0, "config": {}, "metrics": {}}',
            "wrong type: key",
        ),
    ],
)
def test_a_malformed_line_stops_with_file_and_line_unless_skipped(tmp_path, bad, reason, caplog):
    good = _line(_record(0))
    path = _write(tmp_path, good, bad, _line(_record(1)))
    with pytest.raises(RecordsFileError) as info:
        read_records(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: line is ") and reason in message
    assert "\n" not in message and "--skip-bad-lines" in message
    with caplog.at_level(logging.WARNING):
        records = read_records(tmp_path, skip_bad_lines=True)
    assert [r["seed"] for r in records] == [0, 1]
    assert "skipped 1 bad line(s): 2" in caplog.text


def test_report_and_run_stop_on_a_bad_line_and_skip_it_when_asked(tmp_path, capsys, caplog):
    path = _write(tmp_path, _line(_record(0)), b"42")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == f"gnnbackdoor: error: {path}:2: line is a JSON int, not a record "
        "object; fix or delete it, or pass --skip-bad-lines"
    )
    run = ["run", "--task", "link", "--dataset", "SBM", "--model", "gae", "--out", str(tmp_path)]
    assert main([*run, "--quiet", "--set", "max_epochs=1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{path}:2:" in err
    with caplog.at_level(logging.WARNING):
        assert main(["report", str(tmp_path), "--skip-bad-lines"]) == 0
    assert "| SBM | gae |" in capsys.readouterr().out and "skipped 1 bad line(s)" in caplog.text


def test_undefined_metrics_are_written_as_null_in_strict_json(tmp_path):
    append_record(tmp_path, _record(0, asr=float("nan"), auc=float("inf"), acc=0.5))
    text = (tmp_path / RECORDS_FILE).read_text()

    def reject(name):
        raise AssertionError(f"non-JSON constant {name}")

    parsed = json.loads(text, parse_constant=reject)
    assert parsed["metrics"] == {"asr": None, "auc": None, "acc": 0.5}
    assert read_records(tmp_path)[0]["metrics"]["asr"] is None


def test_legacy_nan_lines_read_as_null(tmp_path):
    record = _record(0)
    line = json.dumps({**record, "metrics": {"asr": float("nan")}}).encode()
    assert b"NaN" in line
    _write(tmp_path, line)
    assert read_records(tmp_path)[0]["metrics"] == {"asr": None}


def test_folder_search_reads_records_files_only():
    files = list(iter_record_files([REPO / "results"]))
    assert files and all(f.name == RECORDS_FILE for f in files)
    assert not any("archive" in f.parts for f in files)


def test_a_record_names_the_commit_its_run_started_on(tmp_path, offline_location, monkeypatch):
    # A commit made while a run trains (the records of the runs before it, say) is not the
    # code that ran: the record names the commit read when the sweep started.
    from gnnbackdoor.experiments import records, runner

    head = {"commit": "1111111"}

    class _Done:
        returncode = 0

        @property
        def stdout(self) -> str:
            return head["commit"] + "\n"

    monkeypatch.setattr(records.subprocess, "run", lambda *a, **k: _Done())
    records._git_commit.cache_clear()
    resolve = runner._resolve

    def resolve_then_commit(*args, **kwargs):
        resolved = resolve(*args, **kwargs)
        head["commit"] = "2222222"  # committed while the run goes on
        return resolved

    monkeypatch.setattr(runner, "_resolve", resolve_then_commit)
    try:
        [record] = run_all(
            [RunSpec("graph", "Motifs", "gcn", seed=0, overrides=FAST)], tmp_path, offline_location
        )
    finally:
        records._git_commit.cache_clear()
    assert record["versions"]["git_commit"] == "1111111"


def test_a_record_names_the_machine_numerics(monkeypatch):
    # Floats differ between CPUs (MKL and ATen pick kernels by instruction set), so a record
    # must say which machine and kernel choice made it, to tell that apart from a code change.
    for name in NUMERICS_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    info = versions()
    assert isinstance(info["cpu"], str) and info["cpu"]
    assert info["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info.get("cpu_flags") is None or len(info["cpu_flags"]) == 12
    assert "numerics_env" not in info

    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert versions()["numerics_env"] == {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    json.dumps(versions(), allow_nan=False)  # strict JSON, as every record field
