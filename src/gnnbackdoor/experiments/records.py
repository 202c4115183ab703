"""The record format: one JSON object per (task, dataset, model, attack, defense, seed,
overrides) appended to ``records.jsonl``; the run key makes sweeps resumable."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RECORDS_FILE = "records.jsonl"


def run_key(
    task: str,
    dataset: str,
    model: str,
    attack: str | None,
    defense: str | None,
    seed: int,
    overrides: dict[str, str],
) -> str:
    """A stable 16-hex-digit key of what identifies a run (names folded to lower case)."""
    identity = {
        "task": task.lower(),
        "dataset": dataset.lower(),
        "model": model.lower(),
        "attack": (attack or "").lower(),
        "defense": (defense or "").lower(),
        "seed": int(seed),
        "overrides": dict(sorted(overrides.items())),
    }
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records of a ``records.jsonl`` file, or of ``<dir>/records.jsonl``; a torn last
    line (an interrupted write) is ignored, and so is a second record with a key already
    read."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.exists():
        return []
    records = []
    seen: set[str] = set()
    with path.open() as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = record.get("key")
            if key in seen:  # two sweeps raced on one run: keep the first record
                continue
            if key is not None:
                seen.add(key)
            records.append(record)
    return records


def iter_record_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from sorted(path.rglob(RECORDS_FILE))
        elif path.exists():
            yield path


def append_record(out_dir: Path, record: dict[str, Any]) -> None:
    """Append one record as a line and flush it to disk before returning."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / RECORDS_FILE).open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=_jsonable) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def versions() -> dict[str, str]:
    """Versions of the package, its main dependencies and Python, and the git commit."""
    import numpy
    import sklearn
    import torch
    import torch_geometric

    from gnnbackdoor import __version__

    info = {
        "gnnbackdoor": __version__,
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }
    commit = _git_commit()
    if commit:
        info["git_commit"] = commit
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
