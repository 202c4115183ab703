"""``sweep --plan``: what a sweep would still run, by the resume rule, without running it."""

from __future__ import annotations

import json

import pytest

from gnnbackdoor.cli import main
from gnnbackdoor.datasets.base import DataLocation
from gnnbackdoor.experiments.plan import format_plan, plan_sweep
from gnnbackdoor.experiments.runner import RunSpec, identify, resume_order

RUNTIME = {"threads": 1}


def _spec(seed: int, model: str = "gcn", **overrides: str) -> RunSpec:
    return RunSpec("graph", "Motifs", model, None, None, seed, overrides)


def _record(spec: RunSpec, total_s: float) -> dict:
    identity = identify(spec, runtime=RUNTIME)
    return {
        "key": identity.key,
        "task": "graph",
        "dataset": identity.dataset,
        "model": identity.model,
        "attack": None,
        "defense": None,
        "seed": spec.seed,
        "config": identity.config,
        "metrics": {"clean_acc": 0.5},
        "timings": {"total_s": total_s},
    }


def _write(folder, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    (folder / "records.jsonl").write_text(text)


def test_recorded_runs_are_not_planned_and_their_timings_give_the_median(tmp_path):
    specs = [_spec(seed) for seed in range(3)] + [_spec(0, "gin")]
    # seed 0 and seed 1 recorded; another configuration of the same group counts for time
    other = _record(_spec(5, **{"train.max_epochs": "3"}), 30.0)
    _write(tmp_path, [_record(specs[0], 10.0), _record(specs[1], 20.0), other])
    plan = plan_sweep(specs, tmp_path, runtime=RUNTIME)
    gcn = plan.groups[("graph", "Motifs", "gcn", None, None)]
    gin = plan.groups[("graph", "Motifs", "gin", None, None)]
    assert (gcn.to_run, gcn.recorded, gcn.median_seconds) == (1, 2, 20.0)
    assert (gin.to_run, gin.recorded, gin.median_seconds) == (1, 0, None)
    assert (plan.to_run, plan.recorded) == (2, 2)
    assert plan.estimate_seconds() == (20.0, 1)
    text = format_plan(plan, "grid.yaml", tmp_path)
    assert text.splitlines()[0] == f"grid.yaml: 4 runs, 2 recorded in {tmp_path}, 2 to run"
    assert "graph / Motifs / gin / - / -" in text and "1 group(s) have no recorded run" in text


def test_specs_that_resolve_to_one_run_count_once(tmp_path):
    specs = [_spec(0, **{"max_epochs": "2"}), _spec(0, **{"train.max_epochs": "2"})]
    plan = plan_sweep(specs, tmp_path / "absent", runtime=RUNTIME)
    assert plan.to_run == 1 and plan.recorded == 0


def test_the_resume_order_keeps_the_first_spec_of_each_key_and_marks_the_recorded():
    epochs, same = {"max_epochs": "2"}, {"train.max_epochs": "2"}
    specs = [_spec(0, **epochs), _spec(1), _spec(0, **same), _spec(2), _spec(1)]
    identities = [identify(spec, runtime=RUNTIME) for spec in specs]
    recorded = {identities[1].key}
    assert resume_order(identities, recorded) == [(0, False), (1, True), (3, False)]


def test_the_plan_and_the_sweep_agree_on_what_is_left(tmp_path, monkeypatch):
    from gnnbackdoor.experiments import runner

    specs = [_spec(0), _spec(1), _spec(0), _spec(2)]
    _write(tmp_path, [_record(_spec(1), 10.0)])
    ran: list[int] = []

    class Recording(runner.SequentialExecutor):
        threads = 1

        def run(self, fn, tasks):
            ran.extend(task.index for task in tasks)
            return iter(())

    executor = Recording()
    result = runner.run_sweep(specs, tmp_path, DataLocation(tmp_path), executor=executor)
    plan = plan_sweep(specs, tmp_path, runtime=RUNTIME)
    assert ran == [0, 3] and plan.to_run == len(ran) and plan.recorded == 1
    assert result.skipped == len(specs) - len(ran)


def test_a_thread_count_is_part_of_what_is_recorded(tmp_path):
    _write(tmp_path, [_record(_spec(0), 10.0)])
    assert plan_sweep([_spec(0)], tmp_path, runtime=RUNTIME).to_run == 0
    assert plan_sweep([_spec(0)], tmp_path, runtime={"threads": 2}).to_run == 1


def test_records_at_another_thread_count_are_named_with_the_option_that_matches_them(tmp_path):
    _write(tmp_path, [_record(_spec(0), 10.0), _record(_spec(1), 10.0)])
    plan = plan_sweep([_spec(0), _spec(1)], tmp_path, runtime={"threads": 2})
    assert (plan.to_run, plan.other_threads, plan.threads) == (2, {1: 2}, 2)
    text = format_plan(plan, "grid.yaml", tmp_path)
    assert "2 record(s) of these groups were made at 1 torch thread(s)" in text
    assert "--threads 1" in text
    matched = plan_sweep([_spec(0), _spec(1)], tmp_path, runtime=RUNTIME)
    assert (matched.to_run, matched.other_threads) == (0, {})
    assert "note:" not in format_plan(matched, "grid.yaml", tmp_path)


def test_each_executor_plans_the_thread_count_its_runs_get():
    from gnnbackdoor.experiments.executors import ExecutorKind, run_threads

    assert run_threads(ExecutorKind.SEQUENTIAL, None) is None
    assert run_threads(ExecutorKind.LOCAL, None) == 1
    assert run_threads(ExecutorKind.RAY, None) == 1
    assert run_threads(ExecutorKind.LOCAL, 3) == 3
    assert run_threads(ExecutorKind.SEQUENTIAL, 2) == 2


@pytest.fixture
def no_work(monkeypatch):
    from gnnbackdoor.experiments import runner

    def never(*args, **kwargs):
        raise AssertionError("--plan started a run")

    monkeypatch.setattr(runner, "run_sweep", never)


def test_cli_plan_prints_and_runs_nothing(tmp_path, capsys, no_work):
    grid = tmp_path / "grid.yaml"
    grid.write_text("runs:\n  - task: graph\n    datasets: [Motifs]\n    models: [gcn]\n")
    out = tmp_path / "out"
    args = ["sweep", str(grid), "--out", str(out), "--threads", "1", "--plan", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 runs, 0 recorded" in printed and "graph / Motifs / gcn / - / -" in printed
    assert not out.exists()
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["sweep", str(grid), "--out", str(a_file), "--plan", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a folder" in err


def test_cli_plan_for_a_local_pool_matches_its_one_thread_records(tmp_path, capsys, no_work):
    grid = tmp_path / "grid.yaml"
    grid.write_text("runs:\n  - task: graph\n    datasets: [Motifs]\n    models: [gcn]\n")
    out = tmp_path / "out"
    _write(out, [_record(_spec(0), 10.0)])
    args = ["sweep", str(grid), "--out", str(out), "--executor", "local", "--plan", "--quiet"]
    assert main(args) == 0
    assert "1 runs, 1 recorded" in capsys.readouterr().out
