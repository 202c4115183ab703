"""Progress: plain lines off a terminal, bars that close at the early-stopping epoch, and the
sweep counter."""

from __future__ import annotations

import io

import pytest

from gnnbackdoor.utils import progress


@pytest.fixture
def stderr(monkeypatch):
    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr(progress, "_stream", lambda: stream)
    progress.set_quiet(False)
    yield stream
    progress.set_quiet(True)
    progress.configure(plain=None, interval=30.0)


def test_plain_lines_and_early_stop_off_a_terminal(stderr):
    progress.configure(interval=0.0)  # a line per step
    bar = progress.progress_bar("clean", total=100, unit="epoch")
    for _ in range(3):
        bar.update()
    bar.stop_early("no validation gain in 2 epochs, best epoch 1")
    bar.close()  # closing twice writes nothing more
    lines = stderr.getvalue().splitlines()
    assert "\r" not in stderr.getvalue()
    assert lines[:3] == [
        f"clean: {i}/100 epochs, " + lines[i - 1].split(", ")[1] for i in (1, 2, 3)
    ]
    assert lines[3].startswith(
        "clean: stopped early at epoch 3 of 100: no validation gain in 2 epochs, best epoch 1, "
    )
    assert len(lines) == 4


def test_lines_wait_for_the_interval(stderr):
    progress.configure(interval=3600.0)
    bar = progress.progress_bar("clean", total=10, unit="epoch")
    for _ in range(10):
        bar.update()
    bar.close()
    (line,) = stderr.getvalue().splitlines()
    assert line.startswith("clean: 10 epochs, ")


def test_terminal_bar_closes_at_the_early_stopping_epoch(stderr):
    progress.configure(plain=False)
    bar = progress.progress_bar("clean", total=100, unit="epoch")
    for _ in range(7):
        bar.update()
    tqdm_bar = bar._tqdm
    bar.stop_early("patience")
    assert tqdm_bar.total == 7 and tqdm_bar.n == 7
    assert "stopped early at epoch 7 of 100: patience" in stderr.getvalue()


def test_quiet_writes_nothing(stderr):
    progress.set_quiet(True)
    bar = progress.progress_bar("clean", total=5)
    bar.update()
    bar.stop_early("x")
    sweep = progress.SweepProgress(2)
    sweep.begin("a")
    sweep.end()
    sweep.close()
    assert stderr.getvalue() == ""


def test_sweep_counts_runs_with_an_estimate_after_the_first(stderr):
    sweep = progress.SweepProgress(3, skipped=1)
    sweep.begin("first")
    sweep.end()
    assert sweep.eta() is not None and sweep.eta() >= 0
    sweep.begin("second")
    sweep.end()
    sweep.close()
    lines = stderr.getvalue().splitlines()
    assert lines[0] == "1 run(s) already recorded, skipped"
    assert lines[1].startswith("run 1/3 (") and lines[1].endswith("): first")
    assert "left" not in lines[1] and "left" in lines[2] and lines[2].startswith("run 2/3 (")
    assert lines[3].startswith("sweep: 2/3 run(s) in ")


def test_sweep_announces_runs_that_finish_elsewhere_as_they_come_back(stderr):
    sweep = progress.SweepProgress(3)
    sweep.finish("b")
    sweep.finish("a", failed=True)
    sweep.finish("c")
    sweep.close()
    lines = stderr.getvalue().splitlines()
    assert lines[0].startswith("run 1/3 done (") and lines[0].endswith("left): b")
    assert lines[1].startswith("run 2/3 failed (") and lines[1].endswith("): a")
    assert lines[2].startswith("run 3/3 done (") and "left" not in lines[2]
    assert lines[3].startswith("sweep: 3/3 run(s) in ")
    assert len(lines) == 4


def test_progress_wraps_an_iterable(stderr):
    assert list(progress.progress(range(4), desc="x")) == [0, 1, 2, 3]


def test_duration_reads_naturally():
    assert progress.duration(4.25) == "4.2 s" or progress.duration(4.25) == "4.3 s"
    assert progress.duration(42) == "42 s"
    assert progress.duration(185) == "3 min 05 s"
    assert progress.duration(3720) == "1 h 02 min"


def test_a_bar_run_to_its_total_says_so_once(stderr):
    progress.configure(interval=0.0)  # a line per step
    bar = progress.progress_bar("clean", total=3, unit="epoch")
    for _ in range(3):
        bar.update()
    bar.close()
    lines = stderr.getvalue().splitlines()
    assert [line.split(", ")[0] for line in lines] == [
        "clean: 1/3 epochs",
        "clean: 2/3 epochs",
        "clean: 3 epochs",
    ]
