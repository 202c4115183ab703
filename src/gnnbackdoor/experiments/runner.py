"""The one runner: resolves names through the registries, runs each seed through its task's
pipeline, and appends one record per run to ``records.jsonl``, skipping runs already there.

The runs execute where an :mod:`~gnnbackdoor.experiments.executors` executor puts them (in
this process, a local process pool, or Ray); this module is the driver, the only writer of the
records file, and :func:`run_task` is what every worker runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.datasets.base import DATASETS, DataLocation
from gnnbackdoor.defenses import DEFENSES
from gnnbackdoor.errors import ConfigError, UserError
from gnnbackdoor.experiments.claims import RunClaim, try_claim
from gnnbackdoor.experiments.config import DataConfig, build, split_overrides
from gnnbackdoor.experiments.executors import (
    Executor,
    Outcome,
    RunTask,
    SequentialExecutor,
    error_line,
)
from gnnbackdoor.experiments.pipelines import TASKS, ResolvedRun
from gnnbackdoor.experiments.protocol import PROTOCOL_TARGET_CLASS, protocol_target
from gnnbackdoor.experiments.records import (
    FAILURES_FILE,
    append_record,
    canonical,
    has_field,
    pin_git_commit,
    read_records,
    recorded_created,
    recorded_keys,
    replace_record,
    run_key,
    timestamp,
    versions,
)
from gnnbackdoor.models import MODELS
from gnnbackdoor.utils.progress import SweepProgress
from gnnbackdoor.utils.timing import PhaseTimer

logger = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """What to run: names as the user typed them, one seed, and ``--set`` overrides.

    Two specs that resolve to the same components and configuration are the same run (one
    :attr:`RunIdentity.key`), however they were spelled.
    """

    task: str
    dataset: str
    model: str
    attack: str | None = None
    defense: str | None = None
    seed: int = 0
    overrides: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        """The run key (resolves the spec; loads no data)."""
        return identify(self).key


@dataclass(frozen=True)
class RunIdentity:
    """What identifies a run: canonical names, the seed and the resolved configuration.

    Attributes:
        key: :func:`~gnnbackdoor.experiments.records.run_key` of the other fields.
        config: Sections ``data``, ``train``, ``model``, ``attack``, ``defense`` (every
            field, defaults included, in :func:`~gnnbackdoor.experiments.records.canonical`
            form; ``None`` for an absent component) and ``runtime`` (``{"threads": N}``).
    """

    key: str
    task: str
    dataset: str
    model: str
    attack: str | None
    defense: str | None
    seed: int
    config: dict[str, Any]


def runtime_config() -> dict[str, Any]:
    """The run-time settings results depend on: torch's intra-op thread count (reductions
    are summed in a thread-dependent order, so figures can move with it)."""
    return {"threads": torch.get_num_threads()}


def identity_of(
    task: str,
    names: tuple[str, str, str | None, str | None],
    seed: int,
    resolved: ResolvedRun,
    runtime: dict[str, Any],
) -> RunIdentity:
    """The identity of a resolved run (``names``: canonical dataset, model, attack, defense)."""
    config = canonical(
        {
            "data": resolved.data_config,
            "train": resolved.train_config,
            "model": resolved.model_spec,
            "attack": resolved.attack,
            "defense": resolved.defense,
            "runtime": runtime,
        }
    )
    dataset, model, attack, defense = names
    key = run_key(task, dataset, model, attack, defense, seed, config)
    return RunIdentity(key, task, dataset, model, attack, defense, int(seed), config)


def _check_task(kind: str, name: str, component_task: str, task: str) -> None:
    if component_task != task:
        raise ConfigError(f"{kind} {name!r} is for --task {component_task}, not --task {task}")


def resolve(spec: RunSpec, location: DataLocation, save_dir: Path | None = None) -> ResolvedRun:
    """Look every name up in its registry and build the typed configuration of the run;
    ``save_dir``: where its trained models go (``save_dir/<role>``), or ``None``.

    Raises:
        UserError: unknown names (listing the choices), a component of another task, or bad
            ``--set`` values.
    """
    resolved = _resolve(spec, location)[0]
    resolved.save_dir = save_dir
    return resolved


def identify(
    spec: RunSpec,
    location: DataLocation | None = None,
    runtime: dict[str, Any] | None = None,
) -> RunIdentity:
    """The identity (key, canonical names, resolved configuration) of a spec; loads no data.

    Args:
        runtime: The ``runtime`` section (default: :func:`runtime_config`, the current torch
            thread count).

    Raises:
        UserError: as :func:`resolve`.
    """
    return _resolve(spec, location or DataLocation(), runtime)[1]


def _resolve(
    spec: RunSpec,
    location: DataLocation,
    runtime: dict[str, Any] | None = None,
) -> tuple[ResolvedRun, RunIdentity]:
    pipeline_cls = TASKS.get(spec.task)
    dataset_cls = DATASETS.get(spec.dataset)
    model_cls = MODELS.get(spec.model)
    attack_cls = ATTACKS.get(spec.attack) if spec.attack else None
    defense_cls = DEFENSES.get(spec.defense) if spec.defense else None
    task = pipeline_cls.task
    _check_task("dataset", spec.dataset, dataset_cls.task, task)
    _check_task("model", spec.model, model_cls.task, task)
    if attack_cls is not None:
        _check_task("attack", spec.attack or "", attack_cls.task, task)
    if defense_cls is not None:
        _check_task("defense", spec.defense or "", defense_cls.task, task)
    sections = {
        "data": DataConfig,
        "train": pipeline_cls.train_config_cls,
        "model": model_cls,
        "attack": attack_cls,
        "defense": defense_cls,
    }
    values = split_overrides(_protocol_target(spec, attack_cls is not None), sections)
    data_config = build(DataConfig, values["data"], "data")
    dataset = dataset_cls()
    if data_config.node_attributes:
        if not hasattr(dataset, "with_node_attributes"):
            raise ConfigError(f"data.node_attributes: {spec.dataset} has no node attributes")
        dataset = dataset.with_node_attributes()
    resolved = ResolvedRun(
        dataset_name=DATASETS.canonical(spec.dataset),
        dataset=dataset,
        model_spec=build(model_cls, values["model"], "model"),
        data_config=data_config,
        train_config=build(pipeline_cls.train_config_cls, values["train"], "train"),
        attack=build(attack_cls, values["attack"], "attack") if attack_cls else None,
        defense=build(defense_cls, values["defense"], "defense") if defense_cls else None,
        seed=spec.seed,
        location=location,
    )
    names = (
        resolved.dataset_name,
        MODELS.canonical(spec.model),
        ATTACKS.canonical(spec.attack) if spec.attack else None,
        DEFENSES.canonical(spec.defense) if spec.defense else None,
    )
    identity = identity_of(task, names, spec.seed, resolved, runtime or runtime_config())
    return resolved, identity


#: The value of ``attack.target_class`` that stands for the dataset's protocol target.
PROTOCOL = "protocol"


def _protocol_target(spec: RunSpec, attacked: bool) -> dict[str, Any]:
    """``spec.overrides`` with ``attack.target_class: protocol`` replaced by the dataset's
    protocol target class (:data:`~gnnbackdoor.experiments.protocol.PROTOCOL_TARGET_CLASS`),
    so the run's key and record hold the number, never the word.

    Raises:
        ConfigError: ``protocol`` for a dataset without a protocol target class.
    """
    overrides = dict(spec.overrides)
    for key in ("attack.target_class", "target_class"):
        if attacked and str(overrides.get(key, "")).strip().lower() == PROTOCOL:
            dataset = DATASETS.canonical(spec.dataset)
            target = protocol_target(dataset)
            if target is None:
                known = ", ".join(sorted(PROTOCOL_TARGET_CLASS))
                raise ConfigError(
                    f"{key}=protocol: {dataset} has no protocol target class "
                    f"(datasets with one: {known}); give a class number"
                )
            overrides[key] = target
    return overrides


def execute(spec: RunSpec, location: DataLocation, save_dir: Path | None = None) -> dict:
    """Run one spec and return its record (not yet written); with ``save_dir``, its trained
    models are written to ``save_dir/<role>`` (``clean``, ``backdoored``, ``defended``)."""
    pin_git_commit()  # the commit of the code this process loaded, not one made meanwhile
    resolved, identity = _resolve(spec, location)
    resolved.save_dir = save_dir
    pipeline = TASKS.get(spec.task)()
    timer = PhaseTimer()
    start = time.perf_counter()
    output = pipeline.execute(resolved, timer)
    timer.seconds["total_s"] = time.perf_counter() - start
    return {
        **_identity_fields(identity, spec),
        "metrics": output.metrics,
        "attack_info": output.attack_info,
        "timings": timer.seconds,
        "versions": versions(),
        "created": timestamp(),
    }


def _identity_fields(identity: RunIdentity, spec: RunSpec) -> dict[str, Any]:
    """The fields a run record and a failure record share: what identifies the run."""
    return {
        "key": identity.key,
        "task": identity.task,
        "dataset": identity.dataset,
        "model": identity.model,
        "attack": identity.attack,
        "defense": identity.defense,
        "seed": identity.seed,
        "overrides": dict(sorted(spec.overrides.items())),  # what was typed; information only
        "config": identity.config,
    }


def run_task(task: RunTask) -> Outcome:
    """Run one task and return its record, or its one-line error (the worker function of
    every executor; picklable, so process pools and Ray can ship it).

    Sets torch's thread count to ``task.threads`` first (when given), so the worker computes
    the key the driver computed; a record under another key is returned as a failure.
    """
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    try:
        record = execute(task.spec, task.location, task.save_dir)
        if record["key"] != task.key:
            raise RuntimeError(
                f"the worker keyed this run {record['key']}, the driver {task.key}: it runs "
                "other code or settings (install the same gnnbackdoor on every node)"
            )
    except Exception as error:
        if not task.catch:
            raise
        return Outcome(task.index, error=error_line(error))
    return Outcome(task.index, record=record)


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        written: Records appended to ``records.jsonl`` by this call, in finishing order.
        failed: Failure records appended to ``failures.jsonl`` by this call.
        skipped: Runs already recorded (or repeated in ``specs``), not run again, and runs
            another sweep on the same folder held or recorded meanwhile.
    """

    written: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    skipped: int = 0


def resume_order(identities: Sequence[RunIdentity], recorded: set[str]) -> list[tuple[int, bool]]:
    """The resume rule of a sweep, shared by :func:`run_sweep` and ``sweep --plan``.

    Args:
        identities: The identities of a sweep's specs, in the sweep file's order.
        recorded: The keys already in the output folder's ``records.jsonl``.

    Returns:
        ``(index, is_recorded)`` for the first spec of each distinct key, in order: a spec
        whose key repeats an earlier one's (``--set max_epochs=2`` and
        ``--set train.max_epochs=2``) is dropped, since it is the same run; a recorded key is
        not run again.
    """
    seen: set[str] = set()
    order: list[tuple[int, bool]] = []
    for index, identity in enumerate(identities):
        if identity.key in seen:
            continue
        seen.add(identity.key)
        order.append((index, identity.key in recorded))
    return order


def split_recorded(
    records: Sequence[dict[str, Any]],
    refresh_missing: str | None,
    out_dir: Path,
    rerun: Collection[str] = (),
) -> tuple[set[str], set[str]]:
    """The keys of ``out_dir``'s ``records`` a sweep skips, and those it runs again: their
    record lacks ``refresh_missing`` (none when it is ``None``), or their key is in ``rerun``
    (``sweep --rerun``); the resume rule of :func:`run_sweep` and ``sweep --plan``.

    Raises:
        UserError: a ``refresh_missing`` that is not ``metrics.<name>``, or a metric that
            none of ``records`` holds, when there are records (a misspelt one would make
            every record look stale and run the whole sweep again); the message lists the
            metrics they hold.
    """
    keys = {record["key"] for record in records}
    if refresh_missing is None:
        done = keys
    else:
        section, _, name = refresh_missing.partition(".")
        if section != "metrics" or not name or "." in name:
            raise UserError(
                f"--refresh-missing {refresh_missing}: give one metric as metrics.<name> (the "
                f"re-measurement is for a metric added after the records were made)"
            )
        done = {record["key"] for record in records if has_field(record, refresh_missing)}
        if records and not done:
            _refuse_refresh_field(records, refresh_missing, out_dir)
    done = done - set(rerun)
    return done, keys - done


def check_rerun(rerun: Collection[str], identities: Sequence[RunIdentity]) -> None:
    """Refuse a ``sweep --rerun`` key that no run of the sweep has (a typo would otherwise
    re-measure nothing without a word).

    Raises:
        UserError: one line naming the unknown keys and, for a short sweep, its keys.
    """
    known = list(dict.fromkeys(identity.key for identity in identities))
    unknown = sorted(set(rerun).difference(known))
    if not unknown:
        return
    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    raise UserError(
        f"--rerun {' '.join(unknown)}: no run of this sweep has that key (its {len(known)} "
        f"run key(s): {shown or 'none'}); the key field of a record, which a sweep "
        f"prints as key=... when the run starts, depends on --threads too"
    )


def _refuse_refresh_field(records: Sequence[dict[str, Any]], path: str, out_dir: Path) -> None:
    metrics = sorted({name for record in records for name in record.get("metrics", {})})
    raise UserError(
        f"--refresh-missing {path}: no record in {out_dir} holds it, so it would run every "
        f"recorded run again; give a field that some records hold, e.g. metrics.<name> with "
        f"<name> one of: {', '.join(metrics) or '(no records)'}"
    )


def failure_record(identity: RunIdentity, spec: RunSpec, error: str) -> dict[str, Any]:
    """The failure record of a run that raised (see :mod:`~gnnbackdoor.experiments.records`)."""
    return {
        **_identity_fields(identity, spec),
        "status": "failed",
        "error": error,
        "versions": versions(),
        "created": timestamp(),
    }


def _absolute(location: DataLocation) -> DataLocation:
    """``location`` with absolute paths (a worker may run in another folder or machine)."""
    return replace(
        location,
        cache_dir=Path(location.cache_dir).absolute(),
        mirror_dir=Path(location.mirror_dir).absolute() if location.mirror_dir else None,
    )


def run_sweep(
    specs: list[RunSpec],
    out_dir: Path,
    location: DataLocation,
    save_root: Path | None = None,
    *,
    skip_bad_lines: bool = False,
    executor: Executor | None = None,
    keep_going: bool = True,
    refresh_missing: str | None = None,
    rerun: Collection[str] = (),
) -> SweepResult:
    """Run every spec whose key is not yet in ``out_dir/records.jsonl`` on ``executor`` and
    append each record as soon as its run finishes (so an interrupted sweep, even a driver
    killed with SIGKILL, resumes where it stopped: finished runs are on disk, the runs in
    flight run again, and a torn last line is moved aside).

    Every spec is resolved before the first run, so a typo fails fast; specs that resolve
    to one key (``--set max_epochs=2`` and ``--set train.max_epochs=2``) run once. The
    driver is the only writer of ``records.jsonl`` and ``failures.jsonl`` for its runs:
    workers return records, the driver appends them. Sweeps started on one output folder
    share its runs: each run is claimed before it executes and released once recorded
    (:mod:`~gnnbackdoor.experiments.claims`), so none executes or is recorded twice.

    Progress (``run i/N`` with an estimate of the time left, one line per run) is counted
    here as the outcomes come back: the in-process executor announces each run as it starts,
    the parallel ones as each finishes (they finish in any order).

    Args:
        save_root: Where trained models go: ``save_root/<role>`` when there is one spec,
            else ``save_root/<readable run name>/<role>`` (see :func:`model_folder`).
        executor: Where the runs execute (default: one after the other in this process).
            Its ``threads`` (when set) is each run's torch thread count, part of the key.
        keep_going: Record a run that raises in ``failures.jsonl`` (its one-line error) and go
            on with the others; ``False`` (in-process executor only) lets the error propagate.
        skip_bad_lines: Skip malformed lines of the existing records file (counted in a
            warning) instead of stopping.
        refresh_missing: A metric as ``metrics.<name>`` (``metrics.defended_target_no_trigger``):
            also run again the recorded runs of ``specs`` whose record lacks it, each new
            record taking its old one's place (``records.replace_record``; the old one
            moves to ``superseded.jsonl``). For a metric added after those records were
            made; see :func:`split_recorded`.
        rerun: Run keys of ``specs`` to run again although recorded (``sweep --rerun``),
            each new record replacing its old one as with ``refresh_missing``: a record to
            re-measure on today's code, e.g. one that rests on a stage cached by older code.
            With a stage cache, the run reads the stage cached for its key (the current
            code's), as any run does.

    Raises:
        UserError: a bad spec, a malformed line in the records file, a
            ``refresh_missing`` field that no record of ``out_dir`` holds, or a ``rerun``
            key that no spec has.
    """
    pin_git_commit()  # records name the commit the sweep started on
    executor = executor or SequentialExecutor()
    if not keep_going and not isinstance(executor, SequentialExecutor):
        raise ValueError("keep_going=False needs the in-process (sequential) executor")
    runtime = {"threads": executor.threads} if executor.threads else None
    identities = [identify(spec, location, runtime) for spec in specs]
    check_rerun(rerun, identities)
    rerun = set(rerun)
    existing = read_records(out_dir, skip_bad_lines=skip_bad_lines, repair=True)
    done, stale = split_recorded(existing, refresh_missing, out_dir, rerun)
    # a rerun key's record as this sweep found it: another value later means another sweep
    # recorded or re-measured it meanwhile
    found = {r["key"]: r.get("created") for r in existing if r["key"] in rerun}
    where = _absolute(location)
    root = Path(save_root).absolute() if save_root is not None else None
    result = SweepResult()
    tasks: list[RunTask] = []
    result.skipped = len(specs)
    for index, recorded in resume_order(identities, done):
        spec, identity = specs[index], identities[index]
        if recorded:
            logger.info("skip %s (already recorded)", _label(identity))
            continue
        result.skipped -= 1
        save_dir = root
        if root is not None and len(specs) > 1:
            save_dir = root / model_folder(spec, identity)
        tasks.append(
            RunTask(index, spec, identity.key, where, save_dir, executor.threads, keep_going)
        )
    if save_root is not None and result.skipped:
        logger.warning(
            "%d run(s) already in %s were not run again, so their models were not saved; "
            "use a new --out to save them",
            result.skipped,
            out_dir,
        )
    sweep = SweepProgress(len(tasks), skipped=result.skipped)
    in_process = isinstance(executor, SequentialExecutor)
    claims: dict[int, RunClaim] = {}

    def claim(task: RunTask) -> str | None:
        """Claim ``task`` for this sweep; why not, when another sweep holds or recorded it."""
        held = try_claim(out_dir, task.key)
        if held is None:
            return "running in another sweep"
        if task.key in rerun:
            now = recorded_created(out_dir)
            if task.key in now and now[task.key] != found.get(task.key):
                held.release()
                return "re-measured by another sweep"
        elif task.key in recorded_keys(out_dir, lacking=refresh_missing):
            held.release()
            return "recorded by another sweep"
        claims[task.index] = held
        return None

    def announced(task: RunTask) -> Outcome:
        """:func:`run_task`, claimed and announced as it starts (in-process executor only)."""
        why = claim(task)
        if why is not None:
            return Outcome(task.index, skipped=why)
        sweep.begin(_label(identities[task.index]))
        return run_task(task)

    def skip(index: int, why: str) -> None:
        result.skipped += 1
        sweep.skip(_label(identities[index]), why)

    try:
        if not in_process:  # the runs go out at once: claim them all before they do
            claimed = []
            for task in tasks:
                why = claim(task)
                if why is None:
                    claimed.append(task)
                else:
                    skip(task.index, why)
            tasks = claimed
        for outcome in executor.run(announced if in_process else run_task, tasks):
            spec, identity = specs[outcome.index], identities[outcome.index]
            if outcome.skipped is not None:
                skip(outcome.index, outcome.skipped)
                continue
            error = None
            if outcome.record is not None and identity.key in stale:
                reason = (
                    "re-measured on request (sweep --rerun)"
                    if identity.key in rerun
                    else f"re-measured for {refresh_missing}"
                )
                written = replace_record(out_dir, outcome.record, reason=reason)
                result.written.append(written)
                if refresh_missing is not None and not has_field(written, refresh_missing):
                    logger.warning(
                        "%s: the new record still lacks %s", _label(identity), refresh_missing
                    )
            elif outcome.record is not None:
                append_record(out_dir, outcome.record)  # recorded before the claim goes
                result.written.append(outcome.record)
            else:
                error = outcome.error or "unknown error"
                failure = failure_record(identity, spec, error)
                append_record(out_dir, failure, name=FAILURES_FILE)
                result.failed.append(failure)
            held = claims.pop(outcome.index, None)
            if held is not None:
                held.release()
            if in_process:
                sweep.end()
            else:
                sweep.finish(_label(identity), failed=error is not None)
            if error is not None:
                logger.warning("FAILED %s: %s", _label(identity), error)
    finally:
        for held in claims.values():
            held.release()
        sweep.close()
    return result


def run_all(
    specs: list[RunSpec],
    out_dir: Path,
    location: DataLocation,
    save_root: Path | None = None,
    *,
    skip_bad_lines: bool = False,
) -> list[dict]:
    """:func:`run_sweep` in this process, stopping at the first run that raises.

    With ``save_root``, trained models go to ``save_root/<role>`` when there is one spec,
    else to ``save_root/<readable run name>/<role>`` (see :func:`model_folder`).

    Returns:
        The records written by this call.

    Raises:
        UserError: a bad spec, or a malformed line in the records file; whatever a run raises.
    """
    return run_sweep(
        specs, out_dir, location, save_root, skip_bad_lines=skip_bad_lines, keep_going=False
    ).written


def model_folder(spec: RunSpec, identity: RunIdentity) -> str:
    """A readable folder name for a run's saved models, e.g.
    ``graph-MUTAG-gin-sba-none-seed0`` (plus the run key's first 8 digits when the run has
    ``--set`` overrides, which the name does not spell)."""
    parts = [
        identity.task,
        identity.dataset,
        identity.model,
        identity.attack or "none",
        identity.defense or "none",
        f"seed{identity.seed}",
    ]
    if spec.overrides:
        parts.append(identity.key[:8])
    return "-".join(str(p).replace("/", "_").replace(" ", "_") for p in parts)


def _label(identity: RunIdentity) -> str:
    parts = [
        identity.task,
        identity.dataset,
        identity.model,
        identity.attack or "-",
        identity.defense or "-",
        f"seed={identity.seed}",
        f"key={identity.key}",
    ]
    return " ".join(parts)
