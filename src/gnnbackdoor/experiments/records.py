"""The record format and the records file.

A run appends one JSON object (one line) to ``records.jsonl``. Its ``key`` hashes what
identifies the run (:func:`run_key`): the task, the canonical component names, the seed and
the fully resolved configuration, every field included (defaults too), as
:func:`canonical` writes it, with ``config["runtime"]["threads"]``. What the user typed
(``overrides``) is kept for information only; nothing keys or selects on it.

The file is strict JSON Lines (RFC 8259 values, no ``NaN``): undefined metrics are written as
``null``. Each record is written with one ``write`` of one line, then ``fsync``, under an
exclusive ``flock``, so a crash can leave at most a torn *last* line. Readers treat lines
as follows:

* a torn last line (no trailing newline and not a complete record) is ignored with a
  one-line warning; writers (:func:`prepare_for_append`, :func:`append_record`) first move it
  aside to ``records.jsonl.torn-<UTC timestamp>`` so nothing is ever appended onto it;
* any other bad line (not UTF-8, not JSON, not an object, an object without the record
  fields) raises :class:`RecordsFileError` naming the file and line number, unless
  ``skip_bad_lines`` is set, in which case bad lines are skipped and counted in a warning.

One write is not an append: :func:`replace_record` (``sweep --refresh-missing`` and
``sweep --rerun``) puts a re-measured record on its old one's line, swapping the whole file
atomically under the same lock after the old record is safe in ``superseded.jsonl``.

Folders are searched for files named exactly ``records.jsonl``; ``superseded.jsonl`` (written
by :mod:`gnnbackdoor.experiments.migrate` and :func:`replace_record`), ``failures.jsonl`` (see
below), ``*.torn-*`` files and ``results/archive/*.jsonl`` are therefore never read unless
passed by name.

A run of a sweep that raises leaves a *failure record* in ``failures.jsonl`` beside
``records.jsonl``, appended the same way: the run's ``key``, names, ``seed``, ``config`` and
``overrides``, ``"status": "failed"``, ``error`` (one line, ``"ValueError: ..."``, never a
traceback), ``versions`` and ``created``, and no ``metrics``. Failure records live in their own
file so that every line of ``records.jsonl`` stays a result: pages, reports and the resume
check (which reads ``records.jsonl`` only) never see them, and a later sweep runs a failed run
again. The file is a log: a run that fails twice has two lines, and a run that failed once
and later succeeded keeps its old failure line (:func:`read_failures` can drop those).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from gnnbackdoor.errors import UserError

logger = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
SUPERSEDED_FILE = "superseded.jsonl"
# Runs that raised (or whose worker died) in a sweep: one failure record a line, beside
# records.jsonl; see read_failures.
FAILURES_FILE = "failures.jsonl"
# Fields every record has, with the JSON type each must have (None: may be null).
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "key": (str,),
    "task": (str,),
    "dataset": (str,),
    "model": (str,),
    "attack": (str, type(None)),
    "defense": (str, type(None)),
    "seed": (int,),
    "config": (dict,),
    "metrics": (dict,),
}


class RecordsFileError(UserError):
    """A records file with a line that is not a record (the message names file and line)."""


# -- canonical values ---------------------------------------------------------------------


def canonical(value: Any, *, nonfinite_as_null: bool = False) -> Any:
    """The one JSON form of a configuration (and of record values).

    Dataclass instances become dicts of their ``init`` fields (recursively, so nested
    sections become nested dicts), enums their ``.value``, tuples, lists and sets lists (sets
    sorted), mappings dicts with string keys, paths strings, NumPy/torch scalars Python
    numbers. Two configurations that are equal as typed values have equal canonical forms,
    whatever text produced them.

    Args:
        value: A configuration value.
        nonfinite_as_null: Write ``NaN`` and ``±inf`` floats as ``None`` (used for metrics,
            where they mean "undefined"); otherwise they raise.

    Raises:
        ValueError: a non-finite float when ``nonfinite_as_null`` is false.
        TypeError: a value with no JSON form.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return canonical(value.value, nonfinite_as_null=nonfinite_as_null)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        if nonfinite_as_null:
            return None
        raise ValueError(f"non-finite number {value!r} has no JSON form")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: canonical(getattr(value, f.name), nonfinite_as_null=nonfinite_as_null)
            for f in dataclasses.fields(value)
            if f.init
        }
    if isinstance(value, Mapping):
        return {
            str(canonical(k)): canonical(v, nonfinite_as_null=nonfinite_as_null)
            for k, v in value.items()
        }
    if isinstance(value, set | frozenset):
        return sorted(canonical(v, nonfinite_as_null=nonfinite_as_null) for v in value)
    if isinstance(value, list | tuple):
        return [canonical(v, nonfinite_as_null=nonfinite_as_null) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and tuple(getattr(value, "shape", (None,))) == ():
        # NumPy scalars and 0-d arrays, torch 0-d tensors
        return canonical(value.item(), nonfinite_as_null=nonfinite_as_null)
    raise TypeError(f"no JSON form for a {type(value).__name__}")


def run_key(
    task: str,
    dataset: str,
    model: str,
    attack: str | None,
    defense: str | None,
    seed: int,
    config: Mapping[str, Any],
) -> str:
    """A stable 16-hex-digit key of a run (the first 64 bits of a SHA-256).

    Args:
        task: The pipeline's task (``link``, ``graph``).
        dataset, model, attack, defense: Canonical registered names (``None``: none).
        seed: The run seed.
        config: The fully resolved configuration: sections ``data``, ``train``, ``model``,
            ``attack``, ``defense`` (every field, defaults included) and ``runtime``
            (``{"threads": N}``), typed values or their :func:`canonical` form.
    """
    identity = {
        "task": task,
        "dataset": dataset,
        "model": model,
        "attack": attack,
        "defense": defense,
        "seed": int(seed),
        "config": canonical(config),
    }
    return _digest(identity)


def _digest(identity: Mapping[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def group_key(record: Mapping[str, Any]) -> str:
    """A 16-hex-digit key of a record's run without its seed: the records of one
    configuration over several seeds share it. For reports and pages that group or select
    records (never by the typed ``overrides``)."""
    return _digest(
        {
            "task": record["task"],
            "dataset": record["dataset"],
            "model": record["model"],
            "attack": record.get("attack"),
            "defense": record.get("defense"),
            "config": canonical(record["config"]),
        }
    )


def record_key(record: Mapping[str, Any]) -> str:
    """:func:`run_key` of a record's own fields (equals ``record["key"]`` for records written
    or migrated by the current code)."""
    return run_key(
        record["task"],
        record["dataset"],
        record["model"],
        record.get("attack"),
        record.get("defense"),
        record["seed"],
        record["config"],
    )


def dumps_record(record: Mapping[str, Any]) -> str:
    """One strict-JSON line (no newline) of a record; ``NaN``/``inf`` become ``null``."""
    return json.dumps(canonical(record, nonfinite_as_null=True), sort_keys=True, allow_nan=False)


# -- reading ------------------------------------------------------------------------------


def _strict_constant(name: str) -> Any:
    """Legacy lines may hold bare ``NaN``/``Infinity``; they read as ``None`` (undefined)."""
    return None


def parse_record_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a line holding a record, ``(None, why not)`` otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    try:
        value = json.loads(text, parse_constant=_strict_constant)
    except json.JSONDecodeError as error:
        return None, f"not JSON ({error.msg})"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not a record object"
    missing = [name for name in RECORD_FIELDS if name not in value]
    if missing:
        return None, f"an object without the record fields {', '.join(missing)}"
    wrong = [
        name
        for name, kinds in RECORD_FIELDS.items()
        if not isinstance(value[name], kinds) or isinstance(value[name], bool)
    ]
    if wrong:
        return None, f"record fields of the wrong type: {', '.join(wrong)}"
    return value, None


def _records_path(path: Path) -> Path:
    path = Path(path)
    return path / RECORDS_FILE if path.is_dir() else path


def torn_tail_offset(data: bytes) -> int | None:
    """Offset where a torn last line starts, or ``None`` if the file ends cleanly."""
    if not data or data.endswith(b"\n"):
        return None
    start = data.rfind(b"\n") + 1
    record, _ = parse_record_line(data[start:])
    return None if record is not None else start


def read_records(
    path: Path, *, skip_bad_lines: bool = False, repair: bool = False
) -> list[dict[str, Any]]:
    """All records of a records file, or of ``<dir>/records.jsonl`` (``[]`` if absent).

    A second record with a key already read (two sweeps raced on one run) is ignored: the
    first one counts.

    Args:
        path: A file, or a folder holding ``records.jsonl``.
        skip_bad_lines: Skip malformed lines (with one warning that counts them) instead of
            raising.
        repair: Move a torn last line aside (``<file>.torn-<timestamp>``) before reading, as
            a writer must; without it the torn line is only ignored, with a warning.

    Raises:
        RecordsFileError: a malformed line (not UTF-8, not JSON, not an object, no record
            fields), naming the file and the line number; not raised for a torn last line.
    """
    path = _records_path(path)
    if repair:
        movetorn_tail_offset(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except IsADirectoryError:
        raise RecordsFileError(f"{path} is a folder, not a records file") from None
    torn = torn_tail_offset(data)
    if torn is not None:
        logger.warning(
            "%s: ignoring a torn last line (%d bytes, an interrupted write); a run or sweep "
            "into this folder moves it aside",
            path,
            len(data) - torn,
        )
        data = data[:torn]
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    bad: list[int] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        record, reason = parse_record_line(raw.strip())
        if record is None:
            if not skip_bad_lines:
                raise RecordsFileError(
                    f"{path}:{number}: line is {reason}; fix or delete it, or pass --skip-bad-lines"
                )
            bad.append(number)
            continue
        if record["key"] in seen:
            continue
        seen.add(record["key"])
        records.append(record)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        logger.warning("%s: skipped %d bad line(s): %s", path, len(bad), shown)
    return records


def recorded_keys(out_dir: Path, *, lacking: str | None = None) -> set[str]:
    """The run keys in ``out_dir/records.jsonl`` now (empty if absent), read under a shared
    ``flock`` so that a line another process is appending is never half-read.

    For a sweep checking again, mid-way, whether another sweep has recorded a run since it
    started: malformed lines and a torn tail are passed over without a word (the sweep's first
    read, :func:`read_records`, reports them).

    Args:
        lacking: A dotted field path (``metrics.defended_target_no_trigger``): leave out the
            records that lack it (``sweep --refresh-missing``: those are to be run again).
    """
    return {
        record["key"]
        for record in _current_records(out_dir)
        if lacking is None or has_field(record, lacking)
    }


def recorded_created(out_dir: Path) -> dict[str, str | None]:
    """``{key: created}`` of the records in ``out_dir/records.jsonl`` now, read as
    :func:`recorded_keys` reads them. A sweep that re-measures a recorded run
    (``sweep --rerun``) compares its ``created`` with the one it read at the start: another
    value means another sweep has re-measured the run meanwhile."""
    return {record["key"]: record.get("created") for record in _current_records(out_dir)}


def _current_records(out_dir: Path) -> list[dict[str, Any]]:
    """The well-formed records of ``out_dir/records.jsonl`` now, under a shared ``flock``;
    bad lines and a torn tail are passed over (see :func:`recorded_keys`)."""
    path = Path(out_dir) / RECORDS_FILE
    try:
        with path.open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            try:
                data = handle.read()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    except FileNotFoundError:
        return []
    records = []
    for raw in data.split(b"\n"):
        record, _ = parse_record_line(raw.strip())
        if record is not None:
            records.append(record)
    return records


_ABSENT = object()


def dotted(value: Any, path: str, default: Any = None) -> Any:
    """The field ``path`` (dotted: ``"config.attack.target_class"``) of nested mappings
    ``value``, or ``default`` where a part is missing."""
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def record_threads(record: Mapping[str, Any]) -> int | None:
    """The torch thread count a record was made at (``config.runtime.threads``, part of its
    key), or ``None`` where the record does not say (records older than the run identity)."""
    return dotted(record, "config.runtime.threads")


def has_field(record: Mapping[str, Any], path: str) -> bool:
    """Whether ``record`` holds the dotted field ``path`` (``"metrics.asr"``); a ``null``
    value counts as held (an undefined metric is written as ``null``)."""
    return dotted(record, path, _ABSENT) is not _ABSENT


def iter_record_files(paths: list[Path]) -> Iterator[Path]:
    """Files named ``records.jsonl`` under each folder (sorted), and each file given by name.

    Superseded records (``superseded.jsonl``), torn tails (``records.jsonl.torn-*``) and
    archived records (``results/archive/*.jsonl``) are never found by a folder search.
    """
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from sorted(path.rglob(RECORDS_FILE))
        elif path.exists():
            yield path


# -- writing ------------------------------------------------------------------------------


def movetorn_tail_offset(path: Path) -> Path | None:
    """Move a torn last line of ``path`` to ``<path>.torn-<UTC timestamp>`` and cut it from
    the file, with a one-line warning.

    Returns:
        Where the torn bytes went, or ``None`` when the file ends cleanly or is absent.
    """
    path = _records_path(path)
    if not path.exists():
        return None
    with path.open("r+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            return _move_torn_tail_locked(path, handle)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _move_torn_tail_locked(path: Path, handle) -> Path | None:
    data = handle.read()
    start = torn_tail_offset(data)
    if start is None:
        if data and not data.endswith(b"\n"):  # a complete record without its newline
            handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.torn-{stamp}")
    with aside.open("xb") as out:
        out.write(data[start:])
        out.flush()
        os.fsync(out.fileno())
    handle.truncate(start)
    handle.flush()
    os.fsync(handle.fileno())
    logger.warning(
        "%s: moved a torn last line (%d bytes, an interrupted write) to %s",
        path,
        len(data) - start,
        aside.name,
    )
    return aside


def prepare_for_append(out_dir: Path) -> None:
    """Make ``out_dir/records.jsonl`` safe to append to (moves a torn last line aside)."""
    movetorn_tail_offset(Path(out_dir) / RECORDS_FILE)


def _replaced(path: Path, handle) -> bool:
    """Whether ``path`` no longer names the file ``handle`` holds open: :func:`replace_record`
    swapped a new file in while this writer waited for the lock on the old one."""
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return True


def append_record(out_dir: Path, record: dict[str, Any], *, name: str = RECORDS_FILE) -> None:
    """Append one record as one strict-JSON line: a single ``write`` under an exclusive
    ``flock``, then ``fsync``; a torn last line left by a crash is moved aside first. If the
    file was replaced (:func:`replace_record`) while this call waited for the lock, it opens
    the new file and appends there, so the record is never written into the old one.

    Args:
        name: The file in ``out_dir`` (``FAILURES_FILE`` for a failure record).

    Raises:
        ValueError, TypeError: a configuration value with no JSON form (a bug, not user input).
    """
    line = (dumps_record(record) + "\n").encode()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    with _locked_current(path, "a+b") as handle:
        handle.seek(0)
        _move_torn_tail_locked(path, handle)
        handle.seek(0, os.SEEK_END)
        os.write(handle.fileno(), line)
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _locked_current(path: Path, mode: str) -> Iterator[BinaryIO]:
    """``path`` opened in ``mode`` under an exclusive ``flock``, opened again until the file
    locked is the one ``path`` names (:func:`replace_record` may swap the file while a writer
    waits for the lock on the old one)."""
    while True:
        handle = path.open(mode)
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not _replaced(path, handle):
            break
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
    try:
        yield handle
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def replace_record(out_dir: Path, record: dict[str, Any], *, reason: str) -> dict[str, Any]:
    """Put ``record`` in the place of the record with its key in ``out_dir/records.jsonl``
    (a re-measurement, ``sweep --refresh-missing`` or ``--rerun``), keeping the old one in
    ``superseded.jsonl``; with no record of that key, append it as :func:`append_record` does.

    Under the records file's exclusive ``flock``: the old record, with ``superseded_by``
    (``key``, the new record's ``created``, ``reason``), is appended to ``superseded.jsonl``
    and synced first, unless that file already holds it (a replacement interrupted before its
    second step); then the records file is rewritten atomically (:func:`_replace_bytes`:
    a temporary file and ``os.replace``) with every other line byte for byte as it was. A crash
    at any point therefore leaves the old record in ``records.jsonl`` or the new one, and the
    old one never only in memory. Appenders waiting on the old file move to the new one
    (:func:`append_record`).

    Returns:
        The record as written: ``record`` plus ``refreshed`` = ``{"replaced_created"``: the
        old record's ``created``, ``"reason"``, ``"changed_metrics"``: the metrics both hold
        whose values differ, sorted``}``; or ``record`` itself when it was appended.

    Raises:
        RecordsFileError: a line of the records file that is not a record.
    """
    out_dir = Path(out_dir)
    path = out_dir / RECORDS_FILE
    if not path.exists():
        append_record(out_dir, record)
        return record
    with _locked_current(path, "r+b") as handle:
        _move_torn_tail_locked(path, handle)
        handle.seek(0)
        lines = handle.read().split(b"\n")
        at, old = None, None
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            parsed, why = parse_record_line(raw.strip())
            if parsed is None:
                raise RecordsFileError(f"{path}:{number}: line is {why}")
            if parsed["key"] == record["key"]:
                at, old = number - 1, parsed
                break
        if old is None:
            handle.seek(0, os.SEEK_END)
            os.write(handle.fileno(), (dumps_record(record) + "\n").encode())
            os.fsync(handle.fileno())
            return record
        new = dict(record)
        new["refreshed"] = {
            "replaced_created": old.get("created"),
            "reason": reason,
            "changed_metrics": sorted(
                name
                for name in set(old["metrics"]) & set(record["metrics"])
                if canonical(old["metrics"][name], nonfinite_as_null=True)
                != canonical(record["metrics"][name], nonfinite_as_null=True)
            ),
        }
        _keep_superseded(
            out_dir / SUPERSEDED_FILE,
            {
                **old,
                "superseded_by": {
                    "key": record["key"],
                    "created": record.get("created"),
                    "reason": reason,
                },
            },
        )
        lines[at] = dumps_record(new).encode()
        _replace_bytes(path, b"\n".join(lines))
        return new


def _keep_superseded(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` to ``path`` unless a record with its key and ``created`` is there."""
    try:
        held = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        held = []
    for raw in held:
        parsed, _ = parse_record_line(raw.strip())
        if (
            parsed is not None
            and parsed["key"] == record["key"]
            and parsed.get("created") == record.get("created")
        ):
            return
    append_record(path.parent, record, name=path.name)


def read_failures(out_dir: Path, *, unresolved_only: bool = False) -> list[dict[str, Any]]:
    """The failure records of ``out_dir/failures.jsonl`` in file order (``[]`` if absent).

    A torn last line is ignored; any other line that is not a JSON object is skipped.

    Args:
        unresolved_only: Keep only the last failure of each key, and only for keys that
            ``out_dir/records.jsonl`` does not hold (the runs still failing).
    """
    path = Path(out_dir) / FAILURES_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    failures = []
    for raw in data.splitlines():
        try:
            value = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(value, dict) and "key" in value:
            failures.append(value)
    if not unresolved_only:
        return failures
    done = {record["key"] for record in read_records(out_dir, skip_bad_lines=True)}
    last = {failure["key"]: failure for failure in failures if failure["key"] not in done}
    return list(last.values())


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``path`` with ``records`` (strict JSON lines) atomically: a temporary file in
    the same folder, ``fsync``, then ``os.replace``."""
    _replace_bytes(Path(path), b"".join((dumps_record(r) + "\n").encode() for r in records))


def _replace_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file in the same folder,
    ``fsync``, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# -- provenance ---------------------------------------------------------------------------


#: Environment variables that choose the math kernels torch runs on the CPU, so change a
#: run's floating-point results (MKL's instruction set and reproducibility mode, oneDNN's
#: instruction set, ATen's vector width); a record lists those that are set.
NUMERICS_ENV_VARS = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
)


def versions() -> dict[str, Any]:
    """Versions of the package, its main dependencies and Python, the git commit, and the
    machine's numerics.

    The machine matters: the same commit, packages, seed and thread count give different
    floats on another CPU, because MKL and ATen pick their kernels by instruction set, and
    early stopping turns the last bits into a different epoch (``results/archive/README.md``,
    ``machine_numerics_*``: AIDS GCN SBA seed 0 stops the clean victim at epoch 170 on an
    AVX-512 Xeon, 95 with ``MKL_ENABLE_INSTRUCTIONS=AVX2``, 93 in its record made on an
    earlier machine). So a record names ``cpu`` (the model name) and ``cpu_flags`` (a
    digest of the CPU's feature flags; omitted where ``/proc/cpuinfo`` is missing), both
    from :func:`_cpu`,
    ``torch_cpu_capability`` (:func:`torch.backends.cpu.get_cpu_capability`, e.g.
    ``"AVX512"``) and, under ``numerics_env``, those of :data:`NUMERICS_ENV_VARS` that are
    set (omitted when none). A victim taken from the clean or stage cache was trained
    wherever that entry was made; the record names the machine that ran the rest.

    Returns:
        Strings by name, plus ``numerics_env`` (a dict of strings) when present.
    """
    import numpy
    import sklearn
    import torch
    import torch_geometric

    from gnnbackdoor import __version__

    cpu, cpu_flags = _cpu()
    info: dict[str, Any] = {
        "gnnbackdoor": __version__,
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if cpu_flags:
        info["cpu_flags"] = cpu_flags
    numerics_env = {name: os.environ[name] for name in NUMERICS_ENV_VARS if name in os.environ}
    if numerics_env:
        info["numerics_env"] = numerics_env
    commit = _git_commit()
    if commit:
        info["git_commit"] = commit
    return info


@functools.cache
def _cpu() -> tuple[str, str | None]:
    """The CPU's model name and a digest of its feature flags. Hand-written (a few lines)
    because the standard library's :func:`platform.processor` gives only the architecture on
    Linux, and a dependency (py-cpuinfo) for two strings is not worth it.

    Returns:
        The first ``model name`` of ``/proc/cpuinfo`` (else :func:`platform.processor`, else
        :func:`platform.machine`, else ``"unknown"``), and 12 hex digits of SHA-256 over its
        first ``flags`` line, sorted (``None`` without ``/proc/cpuinfo``). Virtual machines
        often report a generic model name; the flags tell their instruction sets apart.
    """
    name, flags = "", None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            field, sep, value = (part.strip() for part in line.partition(":"))
            if sep and field == "model name" and not name:
                name = value
            elif sep and field == "flags" and flags is None:
                flags = hashlib.sha256(" ".join(sorted(value.split())).encode()).hexdigest()[:12]
    return name or platform.processor() or platform.machine() or "unknown", flags


def pin_git_commit() -> str | None:
    """Read the checkout's commit now; every later record of this process names it.

    A run's code is loaded when its process starts, but its record is written when it ends,
    hours later on a big dataset; a commit made in between (the records of the runs that
    finished, say) must not be named as the code that ran. :func:`run_sweep` and
    :func:`execute` call this before any run starts.

    Returns:
        The short commit (see :func:`_git_commit`), or ``None`` when there is none.
    """
    return _git_commit()


@functools.cache
def _git_commit() -> str | None:
    """The checkout's short commit; ``$GNNBACKDOOR_GIT_COMMIT`` when git cannot tell (a
    copy of the tree without ``.git``, as on a remote worker). Read once per process (see
    :func:`pin_git_commit`)."""
    fallback = os.environ.get("GNNBACKDOOR_GIT_COMMIT") or None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return fallback
    return (out.stdout.strip() or fallback) if out.returncode == 0 else fallback


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
