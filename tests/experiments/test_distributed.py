"""Sweeps spread over processes and Ray (issue 18): the same records as a sequential sweep,
failure records, retried dead workers, a SIGKILLed driver that resumes, concurrent caches.

The Ray tests start one local Ray instance with 2 CPUs for the module and skip when Ray is not
installed (``pip install -e ".[distributed]"``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gnnbackdoor.cli import main
from gnnbackdoor.errors import UserError
from gnnbackdoor.experiments import clean_cache, stage_cache
from gnnbackdoor.experiments.executors import (
    ExecutorKind,
    LocalExecutor,
    RayExecutor,
    SequentialExecutor,
    make_executor,
    worker_context,
)
from gnnbackdoor.experiments.records import (
    FAILURES_FILE,
    RECORDS_FILE,
    parse_record_line,
    read_failures,
    read_records,
)
from gnnbackdoor.experiments.runner import RunSpec, identify, run_sweep, run_task
from gnnbackdoor.experiments.sweep import load_sweep

SRC = Path(__file__).resolve().parents[2] / "src"
SWEEP = """
runs:
  - task: graph
    datasets: [Motifs]
    models: [gin]
    attacks: [null, sba]
    seeds: [0, 1]
    set: {train.max_epochs: 8, train.patience: 8}
"""
# a run that raises inside the worker: MUTAG is not in the (empty) offline mirror
FAILING = RunSpec("graph", "MUTAG", "gin", seed=0)


def _specs(tmp_path: Path) -> list[RunSpec]:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    return load_sweep(path)


def _by_key(records: list[dict]) -> dict[str, dict]:
    return {record["key"]: record for record in records}


def _assert_same_records(records: list[dict], reference: dict[str, dict]) -> None:
    got = _by_key(records)
    assert len(got) == len(records) == len(reference)
    assert set(got) == set(reference)
    for key, record in got.items():
        assert record["metrics"] == reference[key]["metrics"], record["dataset"]
        assert record["config"] == reference[key]["config"]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> dict[str, dict]:
    """The 4 runs of :data:`SWEEP` in this process, one thread each: the reference records."""
    tmp = tmp_path_factory.mktemp("sequential")
    empty = tmp / "mirror"
    empty.mkdir()
    from gnnbackdoor.datasets import DataLocation

    location = DataLocation(cache_dir=tmp / "cache", mirror_dir=empty, allow_download=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_sweep(_specs(tmp), tmp / "out", location)
    finally:
        torch.set_num_threads(before)
    assert len(result.written) == 4 and not result.failed
    return _by_key(result.written)


def test_local_pool_writes_the_sequential_records_and_a_failure_record(
    tmp_path, offline_location, sequential
):
    specs = [*_specs(tmp_path), FAILING]
    result = run_sweep(
        specs, tmp_path / "out", offline_location, executor=LocalExecutor(jobs=2, threads=1)
    )
    _assert_same_records(read_records(tmp_path / "out"), sequential)
    assert [r["key"] for r in result.failed] == [identify(FAILING).key]
    # the failure is a one-line error in failures.jsonl, never in records.jsonl
    (failure,) = read_failures(tmp_path / "out")
    assert failure["status"] == "failed" and failure["dataset"] == "MUTAG"
    assert failure["error"].startswith("DatasetNotFoundError: ") and "\n" not in failure["error"]
    assert "metrics" not in failure
    # a later sweep runs only the failed run again (and it fails again: two failure lines)
    again = run_sweep(specs, tmp_path / "out", offline_location)
    assert again.written == [] and again.skipped == 4 and len(again.failed) == 1
    assert len(read_failures(tmp_path / "out")) == 2
    assert len(read_failures(tmp_path / "out", unresolved_only=True)) == 1
    assert len(read_records(tmp_path / "out")) == 4


def _die_once(task):
    """A worker that kills its own process the first time it sees run 0."""
    marker = Path(task.location.cache_dir) / f"died-{task.index}"
    if task.index == 0 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task)


def test_local_pool_resubmits_the_runs_of_a_dead_worker(tmp_path, offline_location, sequential):
    offline_location.cache_dir.mkdir()
    specs = _specs(tmp_path)
    keys = [identify(spec).key for spec in specs]
    from gnnbackdoor.experiments.executors import RunTask

    tasks = [
        RunTask(i, spec, key, offline_location, None, threads=1)
        for i, (spec, key) in enumerate(zip(specs, keys, strict=True))
    ]
    outcomes = list(LocalExecutor(jobs=2, threads=1).run(_die_once, tasks))
    assert (offline_location.cache_dir / "died-0").exists()
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3]
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    _assert_same_records([o.record for o in outcomes], sequential)


def test_sigkilled_driver_resumes_with_no_record_lost_duplicated_or_torn(
    tmp_path, offline_location, sequential
):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "gnnbackdoor", "sweep", str(tmp_path / "sweep.yaml")]
    argv += ["--out", str(out), "--executor", "local", "--jobs", "2", "--threads", "1"]
    argv += ["--quiet", "--data-mirror", str(offline_location.mirror_dir)]
    argv += ["--cache", str(offline_location.cache_dir)]
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if (out / RECORDS_FILE).exists() and (out / RECORDS_FILE).read_bytes().count(b"\n"):
            break
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert len(read_records(out)) >= 1, driver.stderr.read().decode()[-2000:]
    driver.stderr.close()
    # a write the kill cut short leaves a torn last line; the resume moves it aside
    with (out / RECORDS_FILE).open("ab") as handle:
        handle.write(b'{"key": "0123456789abcdef", "task": "gra')
    result = run_sweep(_specs(tmp_path), out, offline_location, executor=SequentialExecutor())
    lines = (out / RECORDS_FILE).read_bytes().splitlines()
    assert all(parse_record_line(line)[0] is not None for line in lines)
    assert len(lines) == 4  # every run once: none lost, none duplicated
    _assert_same_records(read_records(out), sequential)
    assert result.skipped + len(result.written) == 4
    assert len(list(out.glob(f"{RECORDS_FILE}.torn-*"))) == 1


# -- caches filled by several processes at once -------------------------------------------------


class _Report:
    epochs = best_epoch = 0
    best_val = seconds = 0.0
    history: list = []
    diverged_epoch = None


def _fill_clean_cache(path: str, writer: int, rounds: int) -> list[str]:
    """Save a model whose every weight is ``writer`` to one key and read the key back,
    ``rounds`` times; returns what was wrong with each read (a torn file would mix values)."""
    torch.set_num_threads(1)
    problems = []
    for _ in range(rounds):
        model = torch.nn.Linear(256, 256)
        torch.nn.init.constant_(model.weight, writer)
        torch.nn.init.constant_(model.bias, writer)
        report = _Report()
        report.epochs = writer
        clean_cache.save(Path(path), model, report)
        loaded, got = torch.nn.Linear(256, 256), _Report()
        if not clean_cache.load(Path(path), loaded, got):
            problems.append("an existing entry did not load")
            continue
        values = torch.cat([loaded.weight.flatten(), loaded.bias]).unique()
        if values.numel() != 1 or int(values[0]) != got.epochs:
            problems.append(f"mixed entry: weights {values[:3].tolist()}, epochs {got.epochs}")
    return problems


def _fill_stage_cache(path: str, writer: int, rounds: int) -> list[str]:
    """As :func:`_fill_clean_cache`, for the stage cache (a large entry: a torn file would
    fail to load or mix writers)."""
    problems = []
    for _ in range(rounds):
        stage = stage_cache.AttackStage(
            clean_state={"values": torch.full((200_000,), writer)},
            backdoored_state=None,
            triggered=None,
            eligible=[],
            figures={},
            info={"writer": writer},
            seconds={},
            ctx_timings={},
        )
        stage_cache.save(Path(path), stage)
        got = stage_cache.load(Path(path))
        if got is None:
            problems.append("an existing entry did not load")
        elif not bool((got.clean_state["values"] == got.info["writer"]).all()):
            problems.append("mixed entry")
    return problems


@pytest.mark.parametrize("fill", [_fill_clean_cache, _fill_stage_cache])
def test_processes_filling_one_cache_key_never_read_a_partial_entry(tmp_path, fill):
    path = tmp_path / "cache" / "entry.pt"
    with worker_context().Pool(4) as pool:
        results = pool.starmap(fill, [(str(path), writer, 15) for writer in range(1, 5)])
    assert results == [[]] * 4
    assert [p.name for p in path.parent.iterdir()] == ["entry.pt"]  # no temporary file left


def test_unreadable_cache_entries_are_misses(tmp_path):
    path = tmp_path / "entry.pt"
    path.write_bytes(b"PK\x03\x04 not a whole torch file")
    assert clean_cache.load(path, torch.nn.Linear(2, 2), _Report()) is False
    assert stage_cache.load(path) is None


def _load_mutag(cache: str, mirror: str) -> tuple[int, list[int]]:
    from gnnbackdoor.datasets import DataLocation, load_dataset

    graphs = load_dataset("MUTAG", DataLocation(Path(cache), Path(mirror), allow_download=False))
    return len(graphs), [int(g.num_nodes) for g in graphs[:20]]


@pytest.mark.realdata
def test_processes_loading_one_dataset_into_a_fresh_cache_agree(tmp_path, mirror):
    with worker_context().Pool(3) as pool:
        loads = pool.starmap(_load_mutag, [(str(tmp_path / "cache"), str(mirror))] * 3)
    assert loads[0][0] == 188
    assert loads == [loads[0]] * 3


# -- options and Ray ----------------------------------------------------------------------------


def test_executor_options_that_do_not_apply_stop_with_one_line(tmp_path, capsys):
    with pytest.raises(UserError, match="--address applies to --executor ray"):
        make_executor(ExecutorKind.LOCAL, address="auto")
    with pytest.raises(UserError, match="--jobs needs a parallel executor"):
        make_executor(ExecutorKind.SEQUENTIAL, jobs=2)
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    argv = ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "out"), "--jobs", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gnnbackdoor: error: --jobs needs a parallel executor: --executor local or ray"


def test_ray_executor_without_ray_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    argv = ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['gnnbackdoor: error: --executor ray needs Ray: pip install -e ".[distributed]"']
    assert not (tmp_path / "out" / RECORDS_FILE).exists()


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with 2 CPUs for the module's Ray tests."""
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[distributed]"')
    # Ray's workers are new interpreters: they find the package where this one does
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(SRC), saved] if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.mark.slow
def test_ray_sweep_writes_the_sequential_records(
    tmp_path, offline_location, sequential, ray_instance
):
    specs = [*_specs(tmp_path), FAILING]
    executor = RayExecutor(threads=1)
    result = run_sweep(specs, tmp_path / "out", offline_location, executor=executor)
    executor.close()  # leaves the module's instance running (it did not start it)
    assert ray_instance.is_initialized()
    _assert_same_records(read_records(tmp_path / "out"), sequential)
    assert len(result.written) == 4
    (failure,) = read_failures(tmp_path / "out")
    assert failure["error"].startswith("DatasetNotFoundError: ")
    assert not (tmp_path / "out" / FAILURES_FILE).read_text().count("Traceback")


@pytest.mark.slow
def test_ray_retries_a_run_whose_worker_died(tmp_path, offline_location, ray_instance):
    from gnnbackdoor.experiments.executors import RunTask

    spec = _specs(tmp_path)[0]
    task = RunTask(0, spec, identify(spec).key, offline_location, None, threads=1)
    markers = tmp_path / "markers"
    markers.mkdir()

    def die_on_first_attempts(task, deaths=1):
        attempts = len(list(markers.iterdir()))
        (markers / f"attempt-{attempts}").touch()
        if attempts < deaths:
            os.kill(os.getpid(), signal.SIGKILL)
        return run_task(task)

    (outcome,) = RayExecutor(threads=1, max_retries=1).run(die_on_first_attempts, [task])
    assert outcome.ok, outcome.error
    assert len(list(markers.iterdir())) == 2  # killed once, retried once

    for marker in markers.iterdir():
        marker.unlink()

    def die_always(task):
        return die_on_first_attempts(task, deaths=10)

    (outcome,) = RayExecutor(threads=1, max_retries=1).run(die_always, [task])
    assert not outcome.ok
    assert outcome.error.startswith("WorkerDied: ")
    assert len(list(markers.iterdir())) == 2


def test_ray_errors_become_the_underlying_one_line_error():
    from gnnbackdoor.experiments.executors import _ray_error_line

    class WorkerCrashedError(Exception):
        pass

    class RayTaskError(Exception):
        def __init__(self, cause):
            super().__init__("ray::_in_ray_worker() (pid=1)\n  traceback ...")
            self.cause = cause

    class RaySystemError(Exception):
        pass

    wrapped = RayTaskError(RaySystemError(SyntaxError("invalid syntax (x.py, line 3)"), "tb"))
    assert _ray_error_line(wrapped, 2) == "SyntaxError: invalid syntax (x.py, line 3)"
    assert _ray_error_line(WorkerCrashedError("boom"), 2) == (
        "WorkerDied: the worker process died 3 times during this run"
    )
    assert _ray_error_line(ValueError("a\nb"), 2) == "ValueError: a"


def test_an_unreachable_ray_address_stops_at_once(tmp_path, capsys):
    pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[distributed]"')
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    argv = ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--executor", "ray", "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gnnbackdoor: error: cannot reach the Ray cluster at 127.0.0.1:1: ")
