"""The one runner: resolves names through the registries, runs each seed through its task's
pipeline, and appends one record per run to ``records.jsonl``, skipping runs already there."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.datasets.base import DATASETS, DataLocation
from gnnbackdoor.defenses import DEFENSES
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.experiments.config import DataConfig, as_dict, build, split_overrides
from gnnbackdoor.experiments.pipelines import TASKS, ResolvedRun
from gnnbackdoor.experiments.records import (
    append_record,
    read_records,
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
    """What to run: names as the user typed them, one seed, and ``--set`` overrides."""

    task: str
    dataset: str
    model: str
    attack: str | None = None
    defense: str | None = None
    seed: int = 0
    overrides: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        return run_key(
            self.task,
            self.dataset,
            self.model,
            self.attack,
            self.defense,
            self.seed,
            self.overrides,
        )


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
    values = split_overrides(spec.overrides, sections)
    data_config = build(DataConfig, values["data"], "data")
    dataset = dataset_cls()
    if data_config.node_attributes:
        if not hasattr(dataset, "with_node_attributes"):
            raise ConfigError(f"data.node_attributes: {spec.dataset} has no node attributes")
        dataset = dataset.with_node_attributes()
    return ResolvedRun(
        dataset_name=DATASETS.canonical(spec.dataset),
        dataset=dataset,
        model_spec=build(model_cls, values["model"], "model"),
        data_config=data_config,
        train_config=build(pipeline_cls.train_config_cls, values["train"], "train"),
        attack=build(attack_cls, values["attack"], "attack") if attack_cls else None,
        defense=build(defense_cls, values["defense"], "defense") if defense_cls else None,
        seed=spec.seed,
        location=location,
        save_dir=save_dir,
    )


def execute(spec: RunSpec, location: DataLocation, save_dir: Path | None = None) -> dict:
    """Run one spec and return its record (not yet written); with ``save_dir``, its trained
    models are written to ``save_dir/<role>`` (``clean``, ``backdoored``, ``defended``)."""
    resolved = resolve(spec, location, save_dir)
    pipeline = TASKS.get(spec.task)()
    timer = PhaseTimer()
    start = time.perf_counter()
    output = pipeline.execute(resolved, timer)
    timer.seconds["total_s"] = time.perf_counter() - start
    config: dict[str, Any] = {
        "data": as_dict(resolved.data_config),
        "train": as_dict(resolved.train_config),
        "model": as_dict(resolved.model_spec),
        "attack": resolved.attack.params() if resolved.attack else None,
        "defense": resolved.defense.params() if resolved.defense else None,
    }
    return {
        "key": spec.key(),
        "task": pipeline.task,
        "dataset": resolved.dataset_name,
        "model": MODELS.canonical(spec.model),
        "attack": ATTACKS.canonical(spec.attack) if spec.attack else None,
        "defense": DEFENSES.canonical(spec.defense) if spec.defense else None,
        "seed": spec.seed,
        "overrides": dict(sorted(spec.overrides.items())),
        "config": config,
        "metrics": output.metrics,
        "attack_info": output.attack_info,
        "timings": timer.seconds,
        "versions": versions(),
        "created": timestamp(),
    }


def run_all(
    specs: list[RunSpec],
    out_dir: Path,
    location: DataLocation,
    save_root: Path | None = None,
) -> list[dict]:
    """Run every spec whose key is not yet in ``out_dir/records.jsonl``; append each record
    as soon as its run finishes (so an interrupted sweep resumes where it stopped).

    Every spec is resolved before the first run, so a typo fails fast. With ``save_root``,
    trained models go to ``save_root/<role>`` when there is one spec, else to
    ``save_root/<readable run name>/<role>`` (see :func:`model_folder`).

    Returns:
        The records written by this call.
    """
    for spec in specs:
        resolve(spec, location, None)
    done = {record.get("key") for record in read_records(out_dir)}
    pending = []
    for spec in specs:
        if spec.key() not in done:
            pending.append(spec)
            done.add(spec.key())
    sweep = SweepProgress(len(pending), skipped=len(specs) - len(pending))
    if save_root is not None and len(pending) < len(specs):
        logger.warning(
            "%d run(s) already in %s were not run again, so their models were not saved; "
            "use a new --out to save them",
            len(specs) - len(pending),
            out_dir,
        )
    written = []
    try:
        for spec in pending:
            sweep.begin(_label(spec))
            save_dir = None
            if save_root is not None:
                save_dir = save_root if len(specs) == 1 else save_root / model_folder(spec)
            record = execute(spec, location, save_dir)
            append_record(out_dir, record)
            written.append(record)
            sweep.end()
    finally:
        sweep.close()
    return written


def model_folder(spec: RunSpec) -> str:
    """A readable folder name for a run's saved models, e.g.
    ``graph-MUTAG-gin-sba-none-seed0`` (plus the run key's first 8 digits when the run has
    ``--set`` overrides, which the name does not spell)."""
    parts = [
        spec.task,
        spec.dataset,
        spec.model,
        spec.attack or "none",
        spec.defense or "none",
        f"seed{spec.seed}",
    ]
    if spec.overrides:
        parts.append(spec.key()[:8])
    return "-".join(str(p).replace("/", "_").replace(" ", "_") for p in parts)


def _label(spec: RunSpec) -> str:
    parts = [
        spec.task,
        spec.dataset,
        spec.model,
        spec.attack or "-",
        spec.defense or "-",
        f"seed={spec.seed}",
    ]
    parts += [f"{k}={v}" for k, v in sorted(spec.overrides.items())]
    return " ".join(parts)
