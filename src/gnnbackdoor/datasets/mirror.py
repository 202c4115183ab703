"""Offline mirror of PyG raw files, copied into the toolkit's own cache.

The mirror is a read-only folder laid out the way PyG expects (``<root>/<Name>/raw/...``),
given by ``GNNBACKDOOR_DATA_MIRROR`` or an option. Files are copied (``.xz`` files
decompressed on the way) into ``<cache>/<Name>/raw`` and PyG processes them there; nothing
is ever written into the mirror. Without a mirror, PyG's own download is the fallback.
"""

from __future__ import annotations

import lzma
import os
import shutil
from pathlib import Path
from typing import IO

from gnnbackdoor.errors import DatasetNotFoundError
from gnnbackdoor.utils.files import atomic_write

MIRROR_ENV = "GNNBACKDOOR_DATA_MIRROR"
CACHE_ENV = "GNNBACKDOOR_CACHE"


def default_cache_dir() -> Path:
    """``$GNNBACKDOOR_CACHE`` or ``~/.cache/gnnbackdoor/datasets``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "gnnbackdoor" / "datasets"


def default_mirror_dir() -> Path | None:
    """``$GNNBACKDOOR_DATA_MIRROR`` as a path, or ``None`` when unset or empty."""
    env = os.environ.get(MIRROR_ENV)
    return Path(env).expanduser() if env else None


def _raw_present(raw_dir: Path, expected: list[str]) -> bool:
    return all((raw_dir / name).exists() for name in expected)


def stage_raw_files(
    folder: str,
    expected: list[str],
    cache_dir: Path,
    mirror_dir: Path | None,
    allow_download: bool,
    mirror_given_by: str = MIRROR_ENV,
) -> Path:
    """Make sure ``<cache_dir>/<folder>/raw`` holds ``expected`` files.

    Looks in the cache first, then copies from ``<mirror_dir>/<folder>/raw`` (decompressing a
    ``NAME.xz`` when ``NAME`` itself is absent). When neither has them and downloads are
    allowed, returns anyway so PyG can download; otherwise raises.

    Args:
        folder: Dataset folder name as PyG spells it under its root (``Cora``, ``cora_ml``).
        expected: Raw file names PyG reads from ``raw/``.
        cache_dir: The toolkit's writable cache root.
        mirror_dir: Read-only mirror root, or ``None``.
        allow_download: Whether PyG may fetch missing files itself.
        mirror_given_by: How the user named the mirror (an option such as
            ``--data-mirror`` or the environment variable), named in the error line.

    Returns:
        ``cache_dir``, the root to hand to the PyG dataset class.

    Raises:
        DatasetNotFoundError: files missing from cache and mirror, downloads not allowed; or
            a mirror file that cannot be read or a cache that cannot be written.
    """
    raw_dir = cache_dir / folder / "raw"
    if _raw_present(raw_dir, expected):
        return cache_dir
    if mirror_dir is not None:
        source = mirror_dir / folder / "raw"
        missing = [
            name
            for name in expected
            if not (source / name).exists() and not (source / f"{name}.xz").exists()
        ]
        if not missing:
            for name in expected:
                try:
                    _copy_one(source, raw_dir, name)
                except OSError as error:
                    reason = error.strerror or type(error).__name__
                    raise DatasetNotFoundError(
                        f"could not copy {name} from the mirror {source} into the cache "
                        f"{raw_dir} ({reason})"
                    ) from None
            return cache_dir
        if not allow_download:
            given = (
                f"{mirror_given_by}={mirror_dir}"
                if mirror_given_by == MIRROR_ENV
                else f"{mirror_given_by} {mirror_dir}"
            )
            raise DatasetNotFoundError(
                f"dataset files missing from the mirror {given}: expected "
                f"{source}/{{{','.join(missing)}}}"
            )
    elif not allow_download:
        raise DatasetNotFoundError(
            f"no offline copy of {folder!r}: set {MIRROR_ENV} (or --data-mirror) to a folder "
            f"holding "
            f"{folder}/raw/{{{','.join(expected)}}} (or allow downloads)"
        )
    return cache_dir


def _copy_one(source: Path, target: Path, name: str) -> None:
    """Copy ``source/name`` to ``target/name``, or decompress ``source/name.xz`` into it.

    Written through :func:`~gnnbackdoor.utils.files.atomic_write`: a temporary file with a
    name no other writer uses, renamed over ``target/name``. An interrupted copy never looks
    complete, and two processes that stage one dataset at once (two sweeps started together
    on a fresh cache) both succeed instead of one renaming the other's half-written file away.
    """
    plain = source / name
    opener, path = (open, plain) if plain.exists() else (lzma.open, source / f"{name}.xz")

    def write(handle: IO[bytes]) -> None:
        with opener(path, "rb") as src:
            shutil.copyfileobj(src, handle, length=1 << 20)

    atomic_write(target / name, write)
