"""Run claims: sweeps started on one output folder share its runs, each executed and recorded
once (a claim per run key, released once the record is on disk; a dead sweep's claim goes with
it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gnnbackdoor.experiments import runner
from gnnbackdoor.experiments.claims import CLAIMS_DIR, is_claimed, try_claim
from gnnbackdoor.experiments.executors import LocalExecutor
from gnnbackdoor.experiments.plan import format_plan, plan_sweep
from gnnbackdoor.experiments.records import (
    RECORDS_FILE,
    append_record,
    parse_record_line,
    read_records,
    recorded_keys,
)
from gnnbackdoor.experiments.runner import RunSpec, identify, run_sweep

SRC = Path(__file__).resolve().parents[2] / "src"
KEY = "0123456789abcdef0123"
SWEEP = """
runs:
  - task: graph
    datasets: [Motifs]
    models: [gcn]
    seeds: [0, 1, 2]
    set: {train.max_epochs: 3, train.patience: 3}
"""


def _specs() -> list[RunSpec]:
    over = {"train.max_epochs": "3", "train.patience": "3"}
    return [RunSpec("graph", "Motifs", "gcn", None, None, seed, over) for seed in range(3)]


def _keys(specs: list[RunSpec]) -> list[str]:
    return [identify(spec, runtime={"threads": torch.get_num_threads()}).key for spec in specs]


# -- the claim itself ----------------------------------------------------------------------------


def test_a_claim_is_exclusive_until_released_and_leaves_no_file(tmp_path):
    first = try_claim(tmp_path, KEY)
    assert first is not None and first.held
    assert try_claim(tmp_path, KEY) is None  # a second claim, even from this process
    assert try_claim(tmp_path, KEY[::-1]) is not None  # another key is free
    assert json.loads(first.path.read_text())["pid"] == os.getpid()
    first.release()
    first.release()  # twice is a no-op
    assert not first.held and not first.path.exists()
    with try_claim(tmp_path, KEY) as again:
        assert again is not None
    assert not again.path.exists()


def test_a_killed_holder_leaves_no_claim(tmp_path):
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1])\n"
        "from gnnbackdoor.experiments.claims import try_claim\n"
        "assert try_claim(sys.argv[2], sys.argv[3]) is not None\n"
        "print('held', flush=True); time.sleep(600)\n"
    )
    argv = [sys.executable, "-c", code, str(SRC), str(tmp_path), KEY]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout.readline().strip() == b"held"
            assert try_claim(tmp_path, KEY) is None
            assert is_claimed(tmp_path, KEY)
        finally:
            holder.send_signal(signal.SIGKILL)
    # the file is left behind, the lock is not: the claim is free and the plan says so
    assert (tmp_path / CLAIMS_DIR / f"{KEY}.lock").exists()
    assert not is_claimed(tmp_path, KEY)
    claim = try_claim(tmp_path, KEY)
    assert claim is not None
    claim.release()


def test_is_claimed_reads_without_locking(tmp_path):
    assert not is_claimed(tmp_path, KEY)  # no folder, no file: nothing is created
    assert not (tmp_path / CLAIMS_DIR).exists()
    claim = try_claim(tmp_path, KEY)
    assert is_claimed(tmp_path, KEY)
    assert try_claim(tmp_path, KEY) is None
    claim.release()
    assert not is_claimed(tmp_path, KEY)


@pytest.mark.parametrize("bad", ["", "../x", ".hidden", "a/b"])
def test_bad_keys_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="not a run key"):
        try_claim(tmp_path, bad)


def test_recorded_keys_reads_complete_lines_only(tmp_path):
    assert recorded_keys(tmp_path) == set()
    record = {"key": KEY, "task": "graph", "dataset": "Motifs", "model": "gcn", "seed": 0}
    record |= {"attack": None, "defense": None, "config": {}, "metrics": {}}
    (tmp_path / RECORDS_FILE).write_text(json.dumps(record) + '\n{"key": "torn", "ta')
    assert recorded_keys(tmp_path) == {KEY}


# -- sweeps that share a folder ------------------------------------------------------------------


def test_a_sweep_skips_a_run_another_sweep_holds(tmp_path, offline_location):
    specs = _specs()
    keys = _keys(specs)
    other = try_claim(tmp_path / "out", keys[1])  # another sweep is running seed 1
    plan = plan_sweep(specs, tmp_path / "out", runtime={"threads": torch.get_num_threads()})
    assert plan.running == 1 and plan.to_run == 3
    assert "(1 of them running now in another sweep)" in format_plan(plan, "s", tmp_path)
    result = run_sweep(specs, tmp_path / "out", offline_location)
    assert [r["seed"] for r in result.written] == [0, 2]
    assert result.skipped == 1
    assert recorded_keys(tmp_path / "out") == {keys[0], keys[2]}
    assert list((tmp_path / "out" / CLAIMS_DIR).iterdir()) == [other.path]
    other.release()  # that sweep died without recording: a later sweep runs the run
    again = run_sweep(specs, tmp_path / "out", offline_location)
    assert [r["seed"] for r in again.written] == [1] and again.skipped == 2


def test_a_run_recorded_by_another_sweep_meanwhile_is_not_run(
    tmp_path, offline_location, monkeypatch
):
    specs = _specs()
    keys = _keys(specs)
    out = tmp_path / "out"
    real = runner.run_task

    def run_and_race(task):
        outcome = real(task)
        if task.index == 0:  # while seed 0 trained, another sweep recorded seed 2
            append_record(out, {**outcome.record, "key": keys[2], "seed": 2})
        return outcome

    monkeypatch.setattr(runner, "run_task", run_and_race)
    result = run_sweep(specs, out, offline_location)
    assert [r["seed"] for r in result.written] == [0, 1]
    assert result.skipped == 1
    lines = (out / RECORDS_FILE).read_bytes().splitlines()
    assert len(lines) == 3 and len({json.loads(line)["key"] for line in lines}) == 3


def test_a_parallel_sweep_claims_its_runs_before_handing_them_out(tmp_path, offline_location):
    specs = _specs()
    keys = [identify(spec, runtime={"threads": 1}).key for spec in specs]  # as the pool runs
    other = try_claim(tmp_path / "out", keys[0])
    try:
        executor = LocalExecutor(jobs=2, threads=1)
        result = run_sweep(specs, tmp_path / "out", offline_location, executor=executor)
    finally:
        other.release()
    assert sorted(r["seed"] for r in result.written) == [1, 2] and result.skipped == 1
    assert not result.failed


def test_two_sweep_processes_on_one_folder_record_each_run_once(tmp_path, offline_location):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "gnnbackdoor", "sweep", str(tmp_path / "sweep.yaml")]
    argv += ["--out", str(out), "--threads", "1"]
    argv += ["--data-mirror", str(offline_location.mirror_dir)]
    argv += ["--cache", str(offline_location.cache_dir)]
    sweeps = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    logs = [sweep.communicate(timeout=600)[1].decode() for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], logs
    lines = (out / RECORDS_FILE).read_bytes().splitlines()
    assert all(parse_record_line(line)[0] is not None for line in lines)
    records = [json.loads(line) for line in lines]
    assert sorted(r["seed"] for r in records) == [0, 1, 2], logs  # none twice, none lost
    assert not list((out / CLAIMS_DIR).iterdir())
    assert len(read_records(out)) == 3
