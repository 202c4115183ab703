"""A digest of the package's own source files, for the keys of caches whose entries hold
what code made (trained victims, attack stages): an entry made by other code never hits.

Hand-written: Python offers no "hash of the code behind these objects"; this reads each
object's source file (:func:`inspect.getsourcefile`) as it is on disk.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

PACKAGE = "gnnbackdoor."


def own_classes(cls: type) -> list[type]:
    """``cls`` and its base classes defined in this package, most derived first: the
    modules of all of them shape what an instance does (a change to a shared base class,
    e.g. the trigger attacks' poisoning, concerns every subclass)."""
    return [c for c in cls.__mro__ if c.__module__.startswith(PACKAGE)]


def source_digest(objects: list[Any]) -> str:
    """16 hex digits of SHA-256 over the bytes of each object's source file, in order.

    Args:
        objects: Modules, classes or functions. One without a source file (a built-in, a
            class made at run time) contributes its ``repr`` instead.
    """
    digest = hashlib.sha256()
    for obj in objects:
        try:
            digest.update(Path(inspect.getsourcefile(obj) or "").read_bytes())
        except (TypeError, OSError):
            digest.update(repr(obj).encode())
    return digest.hexdigest()[:16]
