"""Progress on stderr that one switch silences (``--quiet``).

Two renderings, chosen by whether stderr is a terminal:

* a terminal gets tqdm bars (redrawn in place);
* a file or a pipe gets plain lines, at most one per ``interval`` seconds per bar, and one line
  when the bar closes, so a log holds a readable account instead of carriage-return redraws.

A training bar is sized to the maximum number of epochs; when early stopping ends training,
:meth:`Bar.stop_early` closes it at the epoch reached and says why. :class:`SweepProgress`
counts the runs of a sweep (``run i/N``) with an estimate of the time left.

Hand-written over tqdm only for the plain-line mode and the closing line, which tqdm lacks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_quiet = False
_plain: bool | None = None  # None: decide from stderr.isatty()
_interval = 30.0


def set_quiet(quiet: bool) -> None:
    """Silence (``True``) or show (``False``) every progress bar of the package."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def configure(plain: bool | None = None, interval: float | None = None) -> None:
    """Force plain lines (``True``) or bars (``False``); ``None`` decides from stderr.
    ``interval``: seconds between two plain lines of one bar (default 30)."""
    global _plain, _interval
    _plain = plain
    if interval is not None:
        _interval = float(interval)


def _stream() -> TextIO:
    return sys.stderr


def _use_plain() -> bool:
    if _plain is not None:
        return _plain
    stream = _stream()
    return not (hasattr(stream, "isatty") and stream.isatty())


def duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def write(line: str) -> None:
    """One line on stderr that does not break a bar being drawn (nothing when quiet)."""
    if _quiet:
        return
    if _use_plain():
        print(line, file=_stream(), flush=True)
    else:
        tqdm.write(line, file=_stream())


class Bar:
    """A progress bar of ``total`` steps of ``unit``.

    Call :meth:`update` per step, then :meth:`close` (or :meth:`stop_early` when a loop ends
    before ``total``). With ``summary`` the closing writes one line (steps done, time, and why
    it stopped early); without it a bar closes silently.
    """

    def __init__(self, desc: str, total: int | None, unit: str = "it", summary: bool = True):
        self.desc, self.total, self.unit, self.summary = desc, total, unit, summary
        self.n = 0
        self.start = time.perf_counter()
        self._last_line = self.start
        self._closed = _quiet
        self._tqdm = None
        if not _quiet and not _use_plain():
            self._tqdm = tqdm(
                total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=_stream()
            )

    def update(self, n: int = 1) -> None:
        if self._closed:
            return
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
            return
        now = time.perf_counter()
        if self.summary and self.total and self.n >= self.total:
            return  # the closing line says it (no "40/40 epochs" then "40 epochs")
        if now - self._last_line >= _interval:
            self._last_line = now
            of = f"/{self.total}" if self.total else ""
            print(
                f"{self.desc}: {self.n}{of} {self.unit}s, {duration(now - self.start)}",
                file=_stream(),
                flush=True,
            )

    def stop_early(self, reason: str) -> None:
        """Close the bar at the step reached (the bar shows 100 % of it) and say ``reason``."""
        if self._closed:
            return
        if self._tqdm is not None:
            self._tqdm.total = self.n
            self._tqdm.set_postfix_str(reason, refresh=False)
            self._tqdm.refresh()
        of = f" of {self.total}" if self.total else ""
        self._finish(f"stopped early at {self.unit} {self.n}{of}: {reason}")

    def close(self) -> None:
        if self._closed:
            return
        self._finish(f"{self.n} {self.unit}s")

    def _finish(self, what: str) -> None:
        self._closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        if self.summary:
            write(f"{self.desc}: {what}, {duration(time.perf_counter() - self.start)}")

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(desc: str, total: int | None, unit: str = "it", summary: bool = True) -> Bar:
    """A :class:`Bar` (inert when progress is silenced)."""
    return Bar(desc, total, unit, summary)


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Yield from ``iterable`` while drawing a bar (no closing line)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = Bar(desc, total, summary=False)
    try:
        for item in iterable:
            yield item
            bar.update()
    finally:
        bar.close()


class SweepProgress:
    """Counts the runs of a sweep: ``run i/N`` with the elapsed time and an estimate of the
    time left (mean seconds of the runs finished so far × runs left).

    On a terminal a bar (position 0) stays below the runs' own bars; otherwise each run starts
    with one plain line.
    """

    def __init__(self, total: int, skipped: int = 0):
        self.total = total
        self.done = 0
        self.start = time.perf_counter()
        self._tqdm = None
        if not _quiet and total and not _use_plain():
            self._tqdm = tqdm(
                total=total,
                desc="sweep",
                unit="run",
                position=0,
                leave=False,
                dynamic_ncols=True,
                file=_stream(),
                bar_format="{desc}: run {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}]",
            )
        if skipped:
            write(f"{skipped} run(s) already recorded, skipped")

    def eta(self) -> float | None:
        """Seconds left, or ``None`` before the first run finished."""
        if not self.done:
            return None
        per_run = (time.perf_counter() - self.start) / self.done
        return per_run * (self.total - self.done)

    def begin(self, label: str) -> None:
        """Announce run ``done + 1`` of ``total``."""
        eta = self.eta()
        left = f", about {duration(eta)} left" if eta is not None else ""
        elapsed = duration(time.perf_counter() - self.start)
        write(f"run {self.done + 1}/{self.total} ({elapsed} elapsed{left}): {label}")

    def end(self) -> None:
        self.done += 1
        if self._tqdm is not None:
            self._tqdm.update(1)

    def finish(self, label: str, failed: bool = False) -> None:
        """Count a run that came back and say so in one line (``run i/N done``): for runs
        that execute elsewhere and finish in any order, announced when they finish rather
        than with :meth:`begin`."""
        self.end()
        eta = self.eta()
        left = f", about {duration(eta)} left" if eta is not None and eta > 0 else ""
        elapsed = duration(time.perf_counter() - self.start)
        status = "failed" if failed else "done"
        write(f"run {self.done}/{self.total} {status} ({elapsed} elapsed{left}): {label}")

    def skip(self, label: str, why: str) -> None:
        """Drop a run the sweep meant to execute but did not (``why``: another sweep holds or
        recorded it) from the count, in one line."""
        self.total -= 1
        if self._tqdm is not None:
            self._tqdm.total = self.total
            self._tqdm.refresh()
        write(f"skipped ({why}): {label}")

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        if self.total:
            write(
                f"sweep: {self.done}/{self.total} run(s) in "
                f"{duration(time.perf_counter() - self.start)}"
            )
