"""Re-key records to the current run identity (``gnnbackdoor records migrate PATH...``).

Each record's stored task, component names, seed and configuration are resolved through the
current code exactly as a new run would be: the stored configuration is spelled as the
``--set section.field=value`` overrides that produce it, handed to the runner's own resolver
(:func:`gnnbackdoor.experiments.runner.identify`, so the same converter, defaults and
validation apply), and the key is computed from the result. Then:

* the record's ``config`` becomes the resolved configuration (every field; fields the old
  record lacked take today's defaults and are listed in ``migration.filled_defaults``), its
  ``key`` the new key, and ``migration.original_key`` keeps the first key it ever had;
* the resolved configuration must reproduce every stored value, or the record is not
  migrated and the command stops (a value that does not survive the round trip, or a field
  that no longer exists and has no entry in :data:`LEGACY_RENAMES`);
* records the new key reveals as one run are collapsed: the earliest ``created`` stays, the
  others move to ``superseded.jsonl`` beside the file (``<name>.superseded.jsonl`` for a file
  not named ``records.jsonl``), which no page reads. No record is lost.

Records without ``config.runtime`` get ``{"threads": LEGACY_THREADS}`` (see
:data:`LEGACY_THREADS`). Running the migration again changes nothing (the files are
rewritten byte for byte the same); after a change of configuration classes, add the renamed
fields to :data:`LEGACY_RENAMES` and run it again.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.datasets.base import DATASETS, DataLocation
from gnnbackdoor.defenses import DEFENSES
from gnnbackdoor.errors import UserError
from gnnbackdoor.experiments.records import (
    RECORDS_FILE,
    SUPERSEDED_FILE,
    RecordsFileError,
    canonical,
    dumps_record,
    parse_record_line,
    torn_tail_offset,
    write_records,
)
from gnnbackdoor.experiments.runner import RunSpec, identify
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig

SECTIONS = ("data", "train", "model", "attack", "defense")

LEGACY_THREADS = 1
"""Torch threads of every record written before the thread count was recorded.

Every committed sweep was run with ``--threads 1``: the command in each sweep file's header,
in each page's Provenance section and in the Makefile says so, and the Link-Backdoor records
(the only ones that time CPU as well as wall clock) spent at most 0.97 CPU seconds per wall
second per trigger update (91 of 91 records), which a multi-threaded torch would exceed.
"""

LEGACY_RENAMES: dict[tuple[str, str], dict[str, str | None]] = {
    ("defense", "gcleaner"): {
        "recovery_epochs": "recovery.epochs",
        "recovery_lr": "recovery.lr",
        "recovery_batch_size": "recovery.batch_size",
        "similarity_threshold": "recovery.similarity_threshold",
        "trigger_features": "recovery.trigger_features",
        "center_embeddings": "recovery.center_embeddings",
        "generator_hidden": "recovery.generator_hidden",
        "unlearn_epochs": "unlearning.epochs",
        "unlearn_lr": "unlearning.lr",
        "unlearn_batch_size": "unlearning.batch_size",
        "teacher_epochs": "unlearning.teacher_epochs",
        "teacher_lr": "unlearning.teacher_lr",
        "momentum": "unlearning.momentum",
        "weight_decay": "unlearning.weight_decay",
        "heatmap_weight": "unlearning.heatmap_weight",
        "heatmap": "unlearning.heatmap",
        "heatmap_reference": "unlearning.heatmap_reference",
        "student_term": "unlearning.student_term",
        "teacher_term": "unlearning.teacher_term",
        "logit_norm": "unlearning.logit_norm",
        "output_space": "unlearning.output_space",
        "max_grad_norm": "unlearning.max_grad_norm",
    },
    # GraphProt's NumPy clustering was removed (scikit-learn is the reference, issue 13):
    # records made with it keep their figures; the re-measurement of issue 14 supersedes them.
    ("defense", "*"): {"backend": None},
}
"""Fields renamed or moved since records were written.

``{(section, component): {old_field: new_dotted_field or None}}``; ``component`` is the
canonical registered name (``"GCleaner"``), ``"*"`` for any component of the section, or the
section's own name for ``data``/``train``. ``None`` drops a field that no longer exists
(only for a field whose every stored value was its behaviour-neutral default). Example, a
flat GCleaner field moved into a nested section::

    {("defense", "GCleaner"): {"recovery_lr": "recovery.lr"}}
"""


def _black_box(stored: Mapping[str, Any]) -> bool:
    return stored.get("surrogate") not in (None, "none", "null", "")


_LINK_BLACK_BOX_BEFORE_ISSUE_16 = {
    "blackbox_trigger": "clean-surrogate",
    "blackbox_target": "scratch",
}


def _always(stored: Mapping[str, Any]) -> bool:
    return True


_GCLEANER_BEFORE_ISSUE_20 = {
    # the teacher was fine-tuned on every defender graph and never checked
    "unlearning.teacher_holdout": 0.0,
    # a refused teacher meant no unlearning (issue 20); the fallback came with issue 14's re-run
    "unlearning.teacher_fallback": "none",
}

#: The graph classifiers (gnnbackdoor.models.graph), whose fields issue 14 added.
GRAPH_VICTIMS = ("gcn", "gat", "gin", "sage")


def _graph_training(stored: Mapping[str, Any]) -> bool:
    # the graph training section (GraphTrainConfig); link records train with LinkTrainConfig
    return "subgraph_keep" in stored


LEGACY_VALUES: dict[tuple[str, str], tuple[Callable[[Mapping[str, Any]], bool], dict[str, Any]]] = {
    ("attack", "link-backdoor"): (_black_box, _LINK_BLACK_BOX_BEFORE_ISSUE_16),
    ("attack", "link-backdoor-no-inj"): (_black_box, _LINK_BLACK_BOX_BEFORE_ISSUE_16),
    ("defense", "gcleaner"): (_always, _GCLEANER_BEFORE_ISSUE_20),
    # issue 14: the components state their own legacy values (load_model reads them too)
    **{("model", name): (_always, MODELS.get(name).legacy_values) for name in GRAPH_VICTIMS},
    ("train", "train"): (_graph_training, GraphTrainConfig.legacy_values),
    ("attack", "gta"): (_always, ATTACKS.get("gta").legacy_values),
}
"""Fields added since records were written whose default is not what the old code did.

``{(section, component): (applies, {field: old_value})}``: a record whose stored section
lacks ``field`` and for which ``applies(stored_section)`` holds gets ``old_value`` instead of
today's default (and keeps it in its configuration, so its key says how it was made).
Link-Backdoor's black-box protocol (issue 16): before ``blackbox_trigger`` and
``blackbox_target`` existed, a black-box run transferred the trigger optimised on the clean
surrogate and trained the target from fresh weights. White-box runs never read either field,
so they take today's defaults (behaviour-neutral there).
GCleaner (issue 20): before ``unlearning.teacher_holdout`` existed the teacher was
fine-tuned on every defender graph and never checked, which ``teacher_holdout=0`` spells;
before ``unlearning.teacher_fallback`` existed a refused teacher meant no unlearning
(``none``).
The changed defaults need no entry: every committed GCleaner record stores
``unlearning.lr`` (0.05) and ``unlearning.teacher_lr`` (``null``: the unlearning rate, still
accepted) explicitly; the new ``recovery.prior`` (``none``) and ``recovery.prior_weight``
(unused without a prior) take today's defaults, which are the paper's recovery.
Issue 14 (victims as their papers build them; GTA triggers in the data's distribution):
graph victims before ``norm``/``jk``/``head_layers`` had no normalisation, pooled the last
layer and used the two-layer head (GIN's ``num_layers`` 3 is stored in every record); graph
training had a constant learning rate (``lr_decay_factor=1``; ``lr_decay_every`` is then
unused) and per-epoch accuracy selection; GTA allowed every present one-hot label with no
prior. ``data.cv_folds``/``cv_fold`` default to 0, the old split, and need no entry.
"""

LEGACY_NAMES: dict[tuple[str, str], str] = {}
"""Components renamed in a registry: ``{(kind, old_name): new_name}``, kind one of
``dataset``, ``model``, ``attack``, ``defense``."""


class MigrationError(UserError):
    """A record that cannot be resolved by the current code (the message says which)."""


@dataclass
class FileReport:
    """What the migration did to one file."""

    path: Path
    records: int = 0
    rekeyed: int = 0
    config_completed: int = 0
    unchanged: int = 0
    filled: Counter[str] = field(default_factory=Counter)
    superseded: list[tuple[str, str, str]] = field(default_factory=list)  # key, dropped, kept
    keys: list[str] = field(default_factory=list)  # of the records kept
    written: bool = False


# -- one record ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A JSON value spelled as ``--set`` takes it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": 1, "b": {"c": 2}}`` -> ``{"a": 1, "b.c": 2}`` (nested sections)."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _canonical_name(kind: str, registry, name: str | None) -> str | None:
    if name is None:
        return None
    name = LEGACY_NAMES.get((kind, name), name)
    return registry.canonical(name)


def _renamed(section: str, component: str | None, stored: Mapping[str, Any]) -> dict[str, Any]:
    table: dict[str, str | None] = {}
    for owner in ("*", section, component):
        table.update(LEGACY_RENAMES.get((section, owner or ""), {}))
    out: dict[str, Any] = {}
    for name, value in flatten(stored).items():
        target = table.get(name, name)
        if target is not None:
            out[target] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
            return False
        return float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
    return a == b


def migrate_record(
    record: Mapping[str, Any], legacy_threads: int = LEGACY_THREADS
) -> tuple[dict[str, Any], list[str]]:
    """The record re-keyed under the current code, and the fields filled with defaults.

    Raises:
        MigrationError: unknown names or fields, a stored value the current configuration
            does not reproduce, or a configuration the current code rejects.
    """
    names = {
        "dataset": _canonical_name("dataset", DATASETS, record["dataset"]),
        "model": _canonical_name("model", MODELS, record["model"]),
        "attack": _canonical_name("attack", ATTACKS, record.get("attack")),
        "defense": _canonical_name("defense", DEFENSES, record.get("defense")),
    }
    stored_config = record.get("config") or {}
    stored: dict[str, dict[str, Any]] = {}
    overrides: dict[str, str] = {}
    legacy: list[str] = []
    for section in SECTIONS:
        values = stored_config.get(section)
        if values is None:
            continue
        component = names.get(section) if section in names else section
        stored[section] = _renamed(section, component, values)
        applies, old_values = LEGACY_VALUES.get((section, component or ""), (None, {}))
        if applies is not None and applies(stored[section]):
            for name, value in old_values.items():
                if name not in stored[section]:
                    stored[section][name] = value
                    legacy.append(f"{section}.{name}={json.dumps(value)}")
        overrides.update({f"{section}.{k}": _text(v) for k, v in stored[section].items()})
    runtime = stored_config.get("runtime") or {"threads": legacy_threads}
    spec = RunSpec(
        record["task"],
        names["dataset"],
        names["model"],
        names["attack"],
        names["defense"],
        int(record["seed"]),
        overrides,
    )
    try:
        identity = identify(spec, DataLocation(), runtime=runtime)
    except UserError as error:
        raise MigrationError(f"cannot resolve: {error}") from None
    filled: list[str] = []
    for section in SECTIONS:
        resolved = flatten(identity.config[section] or {})
        for path, value in stored.get(section, {}).items():
            if path not in resolved or not _same(resolved[path], value):
                raise MigrationError(
                    f"{section}.{path}: stored {value!r} resolves to {resolved.get(path)!r}"
                )
        filled += [
            f"{section}.{path}={json.dumps(value)}"
            for path, value in resolved.items()
            if path not in stored.get(section, {})
        ]
    migrated = dict(record)
    migrated.update(
        key=identity.key,
        task=identity.task,
        seed=identity.seed,
        config=identity.config,
        **{k: getattr(identity, k) for k in ("dataset", "model", "attack", "defense")},
    )
    if canonical(migrated, nonfinite_as_null=True) != canonical(record, nonfinite_as_null=True):
        previous = dict(record.get("migration") or {})
        migrated["migration"] = {
            "original_key": previous.get("original_key", record["key"]),
            "filled_defaults": sorted(set(previous.get("filled_defaults", [])) | set(filled)),
        }
        legacy_values = sorted(set(previous.get("legacy_values", [])) | set(legacy))
        if legacy_values:  # fields absent from the record, set to what the old code did
            migrated["migration"]["legacy_values"] = legacy_values
    return migrated, filled


# -- one file -----------------------------------------------------------------------------


def _read_all(path: Path) -> list[dict[str, Any]]:
    """Every record line of ``path`` (duplicates included); any bad or torn line stops."""
    data = path.read_bytes()
    if torn_tail_offset(data) is not None:
        raise RecordsFileError(
            f"{path}: torn last line; run 'gnnbackdoor run/sweep' into its folder or move it "
            "aside first"
        )
    records = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        record, reason = parse_record_line(raw.strip())
        if record is None:
            raise RecordsFileError(f"{path}:{number}: line is {reason}")
        records.append(record)
    return records


def _created(record: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(record["created"]))
    except (KeyError, ValueError):
        return datetime.max.replace(tzinfo=None)


def superseded_path(path: Path) -> Path:
    """Where records collapsed out of ``path`` go."""
    if path.name == RECORDS_FILE:
        return path.with_name(SUPERSEDED_FILE)
    return path.with_name(f"{path.stem}.superseded.jsonl")


def migrate_file(
    path: Path, legacy_threads: int = LEGACY_THREADS, dry_run: bool = False
) -> FileReport:
    """Migrate one records file in place (see the module docstring).

    Raises:
        RecordsFileError: a bad or torn line.
        MigrationError: a record the current code cannot resolve (``path:line`` named).
    """
    report = FileReport(path)
    originals = _read_all(path)
    migrated = []
    for number, record in enumerate(originals, start=1):
        try:
            new, filled = migrate_record(record, legacy_threads)
        except MigrationError as error:
            raise MigrationError(
                f"{path}: record {number} (key {record['key']}): {error}"
            ) from None
        report.records += 1
        if new["key"] != record["key"]:
            report.rekeyed += 1
        elif canonical(new, nonfinite_as_null=True) != canonical(record, nonfinite_as_null=True):
            report.config_completed += 1
        else:
            report.unchanged += 1
        report.filled.update(item.split("=")[0] for item in filled)
        migrated.append(new)
    by_key: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(migrated):
        by_key[record["key"]].append(index)
    drop: set[int] = set()
    superseded = []
    for key, indices in by_key.items():
        if len(indices) < 2:
            continue
        keep = min(indices, key=lambda i: (_created(migrated[i]), i))
        for index in indices:
            if index == keep:
                continue
            drop.add(index)
            record = dict(migrated[index])
            record["superseded_by"] = {
                "key": key,
                "created": migrated[keep].get("created"),
                "reason": "same run identity as an earlier record",
            }
            superseded.append(record)
            report.superseded.append(
                (key, str(migrated[index].get("created")), str(migrated[keep].get("created")))
            )
    kept = [record for index, record in enumerate(migrated) if index not in drop]
    report.keys = [record["key"] for record in kept]
    new_bytes = b"".join((dumps_record(r) + "\n").encode() for r in kept)
    if new_bytes != path.read_bytes() and not dry_run:
        if superseded:
            with superseded_path(path).open("ab") as handle:
                handle.write(b"".join((dumps_record(r) + "\n").encode() for r in superseded))
        write_records(path, kept)
        report.written = True
    return report


# -- command ------------------------------------------------------------------------------


def record_files(paths: Sequence[Path]) -> list[Path]:
    """``records.jsonl`` files under folders, and files given by name."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.rglob(RECORDS_FILE))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"no records file or folder {path}")
    if not files:
        raise UserError(f"no records.jsonl under {', '.join(map(str, paths))}")
    return files


def migrate(
    paths: Sequence[Path], legacy_threads: int = LEGACY_THREADS, dry_run: bool = False
) -> str:
    """Migrate every records file under ``paths``; return a Markdown report."""
    reports = [migrate_file(p, legacy_threads, dry_run) for p in record_files(paths)]
    lines = [
        "| file | records | re-keyed | config completed | unchanged | superseded | written |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r.path} | {r.records} | {r.rekeyed} | {r.config_completed} | {r.unchanged} "
            f"| {len(r.superseded)} | {'yes' if r.written else 'no'} |"
        )
    for r in reports:
        if r.filled:
            lines.append(f"\n{r.path}: fields absent from old records, filled with defaults:")
            lines += [f"- `{name}`: {count} record(s)" for name, count in sorted(r.filled.items())]
        for key, dropped, kept in r.superseded:
            lines.append(
                f"\n{r.path}: key {key}: record created {dropped} superseded by the one "
                f"created {kept} (moved to {superseded_path(r.path).name})"
            )
    owners: dict[str, list[Path]] = defaultdict(list)
    for r in reports:
        for key in r.keys:
            owners[key].append(r.path)
    shared = {k: v for k, v in owners.items() if len(set(v)) > 1}
    if shared:
        lines.append(f"\n{len(shared)} key(s) appear in more than one file (not collapsed):")
        lines += [
            f"- {k}: {', '.join(sorted(map(str, set(v))))}" for k, v in sorted(shared.items())
        ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", type=Path, nargs="+", help="records files or folders")
    parser.add_argument(
        "--legacy-threads",
        type=int,
        default=None,
        help=f"torch threads of records that omit it (default {LEGACY_THREADS})",
    )
    parser.add_argument("--dry-run", action="store_true", help="report only; write nothing")


def run(args: argparse.Namespace) -> int:
    """The ``records migrate`` command (``args``: paths, legacy_threads, dry_run)."""
    threads = LEGACY_THREADS if args.legacy_threads is None else args.legacy_threads
    if threads < 1:
        raise UserError(f"--legacy-threads must be at least 1, got {threads}")
    sys.stdout.write(migrate(args.paths, threads, args.dry_run))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gnnbackdoor.experiments.migrate")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"migrate: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
