"""Files that several processes share: atomic replacement and an inter-process lock.

Parallel sweeps (``gnnbackdoor sweep --executor local|ray``) run several workers that fill the
same on-disk caches. Two rules keep those caches correct:

* a cache entry is written to a temporary file with a name no other writer uses (same folder,
  so the rename stays on one filesystem), flushed to disk, then renamed over the entry with
  :func:`os.replace`, which is atomic on POSIX filesystems: a reader sees either no entry or a
  complete one, never a partial file, and of two writers of one key the last rename wins
  (both wrote the same content);
* work that is not a single file (PyG processing a dataset folder) is done under an exclusive
  :func:`fcntl.flock` on a lock file beside it.

Hand-written rather than a dependency: the whole of it is :func:`tempfile.mkstemp`,
:func:`os.replace` and :func:`fcntl.flock` from the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Create or replace ``path`` with what ``write(handle)`` writes, atomically.

    ``write`` receives a binary file handle on a fresh temporary file in ``path``'s folder
    (created if needed); the file is flushed and ``fsync``-ed, then renamed over ``path``.
    If ``write`` raises, the temporary file is removed and ``path`` is left as it was.

    Raises:
        OSError: the folder is not writable (the temporary file cannot be created).
        Whatever ``write`` raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """:func:`torch.save` ``obj`` to ``path`` through :func:`atomic_write`."""
    import torch

    atomic_write(path, lambda handle: torch.save(obj, handle))


@contextlib.contextmanager
def locked(path: Path, *, best_effort: bool = False) -> Iterator[None]:
    """Hold an exclusive :func:`fcntl.flock` on the lock file ``path`` (created, never
    removed) for the duration of the ``with`` block; blocks while another process holds it.

    ``flock`` locks are per open file, released when the holder exits or dies (a killed
    worker never leaves a stale lock). On NFS they need a client that maps ``flock`` onto
    NFS locks (Linux does since 2.6.12).

    Args:
        best_effort: Run the block without a lock when the lock file cannot be created (a
            read-only folder, which no other process can be writing either).

    Raises:
        OSError: the lock file cannot be created, unless ``best_effort``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError:
        if not best_effort:
            raise
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
