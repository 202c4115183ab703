"""Re-measuring recorded runs that lack a field (``sweep --refresh-missing``): each new record
takes its old one's place in ``records.jsonl``, the old one moves to ``superseded.jsonl``, and
nothing is lost, duplicated or torn."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time

import pytest
import torch

from gnnbackdoor.cli import main
from gnnbackdoor.errors import UserError
from gnnbackdoor.experiments.plan import format_plan, plan_sweep
from gnnbackdoor.experiments.records import (
    RECORDS_FILE,
    SUPERSEDED_FILE,
    append_record,
    dumps_record,
    has_field,
    read_records,
    recorded_keys,
    replace_record,
    write_records,
)
from gnnbackdoor.experiments.runner import RunSpec, run_sweep

FIELD = "metrics.floor"


def _record(key: str, **metrics: float | None) -> dict:
    return {
        "key": key,
        "task": "graph",
        "dataset": "Motifs",
        "model": "gcn",
        "attack": None,
        "defense": None,
        "seed": 0,
        "config": {},
        "metrics": dict(metrics),
        "created": f"2026-01-0{len(key)}T00:00:00+00:00",
    }


def test_has_field_follows_dots_and_counts_null_as_held():
    record = _record("a", asr=0.5, floor=None)
    assert has_field(record, "metrics.asr") and has_field(record, FIELD)
    assert not has_field(record, "metrics.robust") and not has_field(record, "metrics.asr.x")


def test_replace_record_swaps_one_line_and_keeps_the_old_one(tmp_path):
    write_records(tmp_path / RECORDS_FILE, [_record("a", asr=0.1), _record("bb", asr=0.2)])
    before = (tmp_path / RECORDS_FILE).read_bytes().splitlines()
    new = {**_record("a", asr=0.3, floor=0.05), "created": "2026-02-01T00:00:00+00:00"}
    written = replace_record(tmp_path, new, reason="re-measured for metrics.floor")
    after = (tmp_path / RECORDS_FILE).read_bytes().splitlines()
    assert len(after) == 2 and after[1] == before[1]  # the other line, byte for byte
    assert json.loads(after[0]) == written
    assert written["refreshed"] == {
        "replaced_created": "2026-01-01T00:00:00+00:00",
        "reason": "re-measured for metrics.floor",
        "changed_metrics": ["asr"],
    }
    (old,) = [json.loads(line) for line in (tmp_path / SUPERSEDED_FILE).read_bytes().splitlines()]
    assert old["metrics"] == {"asr": 0.1}
    assert old["superseded_by"]["created"] == "2026-02-01T00:00:00+00:00"
    assert recorded_keys(tmp_path, lacking=FIELD) == {"a"}
    assert recorded_keys(tmp_path) == {"a", "bb"}


def test_replace_record_of_an_unrecorded_key_appends_it(tmp_path):
    assert replace_record(tmp_path, _record("a"), reason="r") == _record("a")
    write_records(tmp_path / RECORDS_FILE, [_record("a")])
    assert replace_record(tmp_path, _record("bb"), reason="r") == _record("bb")
    assert [r["key"] for r in read_records(tmp_path)] == ["a", "bb"]
    assert not (tmp_path / SUPERSEDED_FILE).exists()


def test_a_replacement_interrupted_after_its_first_step_is_not_kept_twice(tmp_path):
    old = _record("a", asr=0.1)
    write_records(tmp_path / RECORDS_FILE, [old])
    # the crash came after the old record reached superseded.jsonl, before the swap
    append_record(tmp_path, {**old, "superseded_by": {"key": "a"}}, name=SUPERSEDED_FILE)
    replace_record(tmp_path, _record("a", asr=0.1, floor=0.0), reason="r")
    assert len((tmp_path / SUPERSEDED_FILE).read_bytes().splitlines()) == 1
    assert read_records(tmp_path)[0]["refreshed"]["changed_metrics"] == []


def test_an_append_waiting_on_a_replaced_file_goes_to_the_new_one(tmp_path):
    path = tmp_path / RECORDS_FILE
    write_records(path, [_record("a")])
    with path.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as replace_record holds the old file
        appender = threading.Thread(target=append_record, args=(tmp_path, _record("bb")))
        appender.start()
        time.sleep(0.2)  # the appender now waits for the lock on the old file
        tmp = tmp_path / "new"
        tmp.write_bytes((dumps_record(_record("a", floor=0.0)) + "\n").encode())
        os.replace(tmp, path)
        fcntl.flock(held, fcntl.LOCK_UN)
    appender.join(timeout=10)
    assert [(r["key"], r["metrics"]) for r in read_records(tmp_path)] == [
        ("a", {"floor": 0.0}),
        ("bb", {}),
    ]


def _specs() -> list[RunSpec]:
    over = {"train.max_epochs": "3", "train.patience": "3"}
    return [RunSpec("graph", "Motifs", "gcn", None, None, seed, over) for seed in range(3)]


def test_a_refresh_sweep_runs_only_the_records_lacking_the_field(tmp_path, offline_location):
    out = tmp_path / "out"
    first = run_sweep(_specs(), out, offline_location).written
    name = sorted(first[0]["metrics"])[0]
    stripped = [
        {**r, "metrics": {k: v for k, v in r["metrics"].items() if k != name}}
        if r["seed"] < 2
        else r
        for r in first
    ]
    write_records(out / RECORDS_FILE, stripped)
    kept_line = (out / RECORDS_FILE).read_bytes().splitlines()[2]
    field = f"metrics.{name}"
    runtime = {"threads": torch.get_num_threads()}
    plan = plan_sweep(_specs(), out, runtime=runtime, refresh_missing=field)
    assert (plan.to_run, plan.recorded, plan.refreshing) == (2, 1, 2)
    assert f"(2 of them recorded without {field}, to be re-measured)" in format_plan(plan, "s", out)
    assert run_sweep(_specs(), out, offline_location).written == []  # a plain sweep: done
    again = run_sweep(_specs(), out, offline_location, refresh_missing=field).written
    assert [r["seed"] for r in again] == [0, 1]
    lines = (out / RECORDS_FILE).read_bytes().splitlines()
    assert len(lines) == 3 and lines[2] == kept_line
    records = read_records(out)
    assert [r["key"] for r in records] == [r["key"] for r in first]
    assert all(has_field(r, field) for r in records)
    # the same key is the same run: a re-measurement reproduces every metric the old one had
    assert [r["refreshed"]["changed_metrics"] for r in records[:2]] == [[], []]
    assert [r["metrics"][name] for r in records] == [r["metrics"][name] for r in first]
    superseded = [json.loads(x) for x in (out / SUPERSEDED_FILE).read_bytes().splitlines()]
    assert [r["seed"] for r in superseded] == [0, 1]
    assert run_sweep(_specs(), out, offline_location, refresh_missing=field).written == []


def test_a_field_no_record_holds_is_refused(tmp_path, offline_location):
    write_records(tmp_path / RECORDS_FILE, [_record("a", asr=0.1)])
    with pytest.raises(UserError, match=r"no record in .* holds it.*asr"):
        run_sweep(_specs(), tmp_path, offline_location, refresh_missing="metrics.asrr")


@pytest.mark.parametrize("field", ["metrics", "refreshed", "metrics.asr.x", "asr"])
def test_only_a_metric_can_be_refreshed(tmp_path, field):
    write_records(tmp_path / RECORDS_FILE, [_record("a", asr=0.1)])
    with pytest.raises(UserError, match=r"metrics\.<name>"):
        plan_sweep(_specs(), tmp_path, refresh_missing=field)


def test_a_refresh_into_an_empty_folder_is_a_plain_sweep(tmp_path):
    plan = plan_sweep(_specs(), tmp_path, refresh_missing="metrics.anything")
    assert (plan.to_run, plan.refreshing) == (3, 0)


def test_the_cli_refuses_a_misspelt_field_in_one_line(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    write_records(tmp_path / "out" / RECORDS_FILE, [_record("a", asr=0.1)])
    (tmp_path / "s.yaml").write_text(
        "runs:\n  - task: graph\n    datasets: [Motifs]\n    models: [gcn]\n    seeds: [0]\n"
    )
    argv = ["sweep", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--plan"]
    assert main([*argv, "--refresh-missing", "metrics.asrr"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.asrr" in err and "asr" in err


# ``sweep --rerun KEY``: a recorded run re-measured on request


def test_a_rerun_sweep_re_measures_only_the_named_keys(tmp_path, offline_location):
    out = tmp_path / "out"
    first = run_sweep(_specs(), out, offline_location).written
    lines = (out / RECORDS_FILE).read_bytes().splitlines()
    key = first[1]["key"]
    runtime = {"threads": torch.get_num_threads()}
    plan = plan_sweep(_specs(), out, runtime=runtime, rerun=[key])
    assert (plan.to_run, plan.recorded, plan.rerunning, plan.refreshing) == (1, 2, 1, 0)
    assert "(1 of them recorded, to be re-measured: --rerun)" in format_plan(plan, "s", out)
    (again,) = run_sweep(_specs(), out, offline_location, rerun=[key]).written
    assert again["key"] == key and again["seed"] == 1
    assert again["refreshed"]["reason"] == "re-measured on request (sweep --rerun)"
    assert again["refreshed"]["changed_metrics"] == []  # same key, same figures
    assert again["refreshed"]["replaced_created"] == first[1]["created"]
    after = (out / RECORDS_FILE).read_bytes().splitlines()
    assert len(after) == 3 and after[0] == lines[0] and after[2] == lines[2]
    assert json.loads(after[1]) == again
    (old,) = [json.loads(x) for x in (out / SUPERSEDED_FILE).read_bytes().splitlines()]
    assert old["created"] == first[1]["created"] and old["superseded_by"]["key"] == key
    assert run_sweep(_specs(), out, offline_location).written == []  # a plain sweep: done


def test_a_rerun_key_no_run_has_is_refused(tmp_path, offline_location):
    with pytest.raises(UserError, match=r"--rerun 0123abcd: no run of this sweep has that key"):
        run_sweep(_specs(), tmp_path, offline_location, rerun=["0123abcd"])
    with pytest.raises(UserError, match=r"its 3 run key\(s\)"):
        plan_sweep(_specs(), tmp_path, rerun=["0123abcd"])
    assert not (tmp_path / RECORDS_FILE).exists()


class _OtherSweepFirst:
    """An in-process executor that lets "another sweep" re-measure each run's record just
    before this sweep claims it."""

    threads = None

    def __init__(self, out):
        self.out = out

    def run(self, worker, tasks):
        for task in tasks:
            (old,) = [r for r in read_records(self.out) if r["key"] == task.key]
            replace_record(self.out, {**old, "created": "2099-01-01T00:00:00+00:00"}, reason="x")
            yield worker(task)

    def close(self):
        pass


def test_a_rerun_another_sweep_made_meanwhile_is_not_made_twice(
    tmp_path, offline_location, monkeypatch
):
    import gnnbackdoor.experiments.runner as runner

    out = tmp_path / "out"
    first = run_sweep(_specs()[:1], out, offline_location).written
    monkeypatch.setattr(runner, "SequentialExecutor", _OtherSweepFirst)
    result = run_sweep(
        _specs()[:1], out, offline_location, executor=_OtherSweepFirst(out), rerun=[first[0]["key"]]
    )
    assert result.written == [] and result.skipped == 1
    assert [r["created"] for r in read_records(out)] == ["2099-01-01T00:00:00+00:00"]


def test_the_cli_refuses_an_unknown_rerun_key_in_one_line(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(
        "runs:\n  - task: graph\n    datasets: [Motifs]\n    models: [gcn]\n    seeds: [0]\n"
    )
    argv = ["sweep", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out")]
    for extra in (["--plan"], []):
        assert main([*argv, *extra, "--rerun", "feedface"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--rerun feedface" in err and "1 run key" in err
