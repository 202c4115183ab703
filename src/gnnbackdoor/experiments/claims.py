"""Run claims: while a sweep executes a run, it holds an exclusive lock named by the run's key,
so that two sweeps writing one output folder never execute (nor record) the same run twice.

A claim is an exclusive, non-blocking ``flock`` on ``<out>/.claims/<key>.lock``. The kernel
drops it when the holder exits, however it exits (``SIGKILL`` and power loss included), so a
dead sweep never leaves a stale claim behind: the next sweep simply takes it. The driver
claims a run just before it executes (the in-process executor) or before it hands the runs
out (the parallel executors), checks the records file again once it holds the claim (another
sweep may have recorded the run since this one read the file), and appends the record
*before* it releases the claim. Two sweeps started on one folder therefore share its runs
between them, each run once.

Written here on ``fcntl`` rather than a locking library because the guarantee needed is exactly
the records file's own (:func:`~gnnbackdoor.experiments.records.append_record` locks the same
way): POSIX file systems, one machine or a file system with working ``flock``.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

#: The folder of ``<out>`` that holds the claims of the runs in flight (empty when none are).
CLAIMS_DIR = ".claims"


class RunClaim:
    """A held claim on one run; :meth:`release` (or ``with``) gives it up and removes its file.

    Attributes:
        path: The lock file, ``<out>/.claims/<key>.lock``.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in that order, so a sweep that opened the
        file meanwhile sees it gone and opens a fresh one). Releasing twice is a no-op."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_path(out_dir: Path, key: str) -> Path:
    if not key or "/" in key or key.startswith("."):
        raise ValueError(f"not a run key: {key!r}")
    return Path(out_dir) / CLAIMS_DIR / f"{key}.lock"


def try_claim(out_dir: Path, key: str) -> RunClaim | None:
    """Claim run ``key`` of the output folder ``out_dir`` without waiting.

    Returns:
        The held :class:`RunClaim`, or ``None`` when a live process (another sweep, or this
        one) holds it.

    Raises:
        ValueError: ``key`` is not a run key (empty, or has a ``/`` or a leading dot).
        OSError: ``out_dir`` cannot be written.
    """
    path = _lock_path(out_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:
            # The holder released (and removed) the file between our open and our lock: the
            # lock we hold is on a file no one else can find; start again on a fresh one.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            continue
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())  # for a person who looks
        return RunClaim(path, fd)


def is_claimed(out_dir: Path, key: str) -> bool:
    """Whether run ``key`` of ``out_dir`` looks held now (for ``sweep --plan``).

    Read from the holder's note in the lock file, without locking (a probe lock could make a
    sweep claiming at that instant skip the run): a file whose holder is a process of this
    host that no longer exists (a sweep killed with ``SIGKILL`` leaves its file, not its lock)
    is not a claim; a holder on another host is taken at its word.
    """
    path = _lock_path(out_dir, key)
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return False
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int):
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's process
        pass
    return True
