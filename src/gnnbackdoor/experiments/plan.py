"""What a sweep would still run, and what the runs already recorded cost (``sweep --plan``).

A sweep resumes by key (:func:`~gnnbackdoor.experiments.runner.run_sweep`): a run whose
resolved configuration is recorded in ``--out`` is skipped. The plan applies the same rule
(:func:`~gnnbackdoor.experiments.runner.resume_order`) without loading data or training
anything, and groups what is left by (task, dataset, model, attack, defense), beside the
wall-clock seconds (``timings.total_s``) that the recorded runs of the same group took.
That median is a guide, not a promise: a run that found its victims in
``GNNBACKDOOR_CLEAN_CACHE`` or ``GNNBACKDOOR_STAGE_CACHE`` took less than one that trained
them, and a loaded machine takes longer.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gnnbackdoor.datasets.base import DataLocation
from gnnbackdoor.experiments.claims import is_claimed
from gnnbackdoor.experiments.records import read_records, record_threads
from gnnbackdoor.experiments.runner import (
    RunSpec,
    check_rerun,
    identify,
    resume_order,
    split_recorded,
)

#: (task, dataset, model, attack, defense): canonical names, ``None`` for no attack/defense.
GroupKey = tuple[str, str, str, str | None, str | None]


@dataclass
class PlanGroup:
    """One (task, dataset, model, attack, defense) of a sweep file.

    Attributes:
        to_run: Runs of the file in this group with no record in the folder yet.
        recorded: Runs of the file in this group already recorded.
        running: Of ``to_run``, runs another sweep on the folder holds now
            (:func:`~gnnbackdoor.experiments.claims.is_claimed`); a sweep started now skips
            them unless that sweep stops first.
        seconds: ``timings.total_s`` of every record of this group in the folder (any
            sweep's), in seconds of wall-clock time.
    """

    to_run: int = 0
    recorded: int = 0
    running: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def median_seconds(self) -> float | None:
        """Median wall-clock seconds of the recorded runs of this group, ``None`` without."""
        return statistics.median(self.seconds) if self.seconds else None


@dataclass
class SweepPlan:
    """What ``run_sweep`` would run: groups in the sweep file's order."""

    groups: dict[GroupKey, PlanGroup]
    #: Records of the groups with runs left that were made at another torch thread count
    #: than the plan's (the count is part of the key, so they do not match): count per
    #: thread count.
    other_threads: dict[int, int] = field(default_factory=dict)
    #: The torch thread count the plan's keys carry.
    threads: int | None = None
    #: Of the runs to run, those recorded without the ``refresh_missing`` field (run again).
    refreshing: int = 0
    #: That field (``None``: a plain sweep).
    refresh_missing: str | None = None
    #: Of the runs to run, those recorded but named by ``sweep --rerun`` (run again).
    rerunning: int = 0

    @property
    def to_run(self) -> int:
        return sum(g.to_run for g in self.groups.values())

    @property
    def recorded(self) -> int:
        return sum(g.recorded for g in self.groups.values())

    @property
    def running(self) -> int:
        return sum(g.running for g in self.groups.values())

    def estimate_seconds(self) -> tuple[float, int]:
        """Seconds for the runs left at their groups' recorded medians (one run at a time),
        and how many groups with runs left have no record to go by."""
        total, unknown = 0.0, 0
        for group in self.groups.values():
            if not group.to_run:
                continue
            if group.median_seconds is None:
                unknown += 1
            else:
                total += group.to_run * group.median_seconds
        return total, unknown


#: The fields a plan groups runs by: a run identity's attributes and a record's keys alike.
_GROUP_FIELDS = ("task", "dataset", "model", "attack", "defense")


def plan_sweep(
    specs: list[RunSpec],
    out_dir: Path,
    location: DataLocation | None = None,
    runtime: dict[str, Any] | None = None,
    *,
    skip_bad_lines: bool = False,
    refresh_missing: str | None = None,
    rerun: Collection[str] = (),
) -> SweepPlan:
    """The runs of ``specs`` not yet recorded in ``out_dir``, grouped; loads no data.

    Args:
        runtime: The ``runtime`` section each run would have (``{"threads": N}`` for
            ``--threads N``; default: this process's torch thread count, as ``run_sweep``).
        refresh_missing: Count recorded runs whose record lacks this dotted field as to
            run, as ``sweep --refresh-missing`` would run them again.
        rerun: Run keys to count as to run although recorded, as ``sweep --rerun``.

    Raises:
        UserError: a bad spec (as :func:`~gnnbackdoor.experiments.runner.identify`), a
            malformed line in the records file, a ``refresh_missing`` field no record
            holds, or a ``rerun`` key no spec has.
    """
    records = read_records(out_dir, skip_bad_lines=skip_bad_lines)
    identities = [identify(spec, location, runtime) for spec in specs]
    check_rerun(rerun, identities)
    done, stale = split_recorded(records, refresh_missing, out_dir, rerun)
    refreshing = rerunning = 0
    groups: dict[GroupKey, PlanGroup] = defaultdict(PlanGroup)
    for index, recorded in resume_order(identities, done):
        identity = identities[index]
        group = groups[tuple(getattr(identity, name) for name in _GROUP_FIELDS)]  # type: ignore[index]
        if recorded:
            group.recorded += 1
        else:
            group.to_run += 1
            group.running += is_claimed(out_dir, identity.key)
            if identity.key in stale:
                if identity.key in rerun:
                    rerunning += 1
                else:
                    refreshing += 1
    threads = identities[0].config["runtime"].get("threads") if identities else None
    other: Counter[int] = Counter()
    for record in records:
        group = groups.get(tuple(record.get(name) for name in _GROUP_FIELDS))  # type: ignore[arg-type]
        if group is None:
            continue
        seconds = (record.get("timings") or {}).get("total_s")
        if isinstance(seconds, int | float):
            group.seconds.append(float(seconds))
        made_at = record_threads(record)
        if group.to_run and isinstance(made_at, int) and made_at != threads:
            other[made_at] += 1
    return SweepPlan(dict(groups), dict(other), threads, refreshing, refresh_missing, rerunning)


def format_plan(plan: SweepPlan, source: str, out_dir: Path) -> str:
    """The plan as the lines ``sweep --plan`` prints: a header, one line per group with runs
    left, and the estimate."""
    lines = [
        f"{source}: {plan.to_run + plan.recorded} runs, {plan.recorded} recorded in "
        f"{out_dir}, {plan.to_run} to run"
    ]
    left = [(key, g) for key, g in plan.groups.items() if g.to_run]
    if plan.refresh_missing is not None:
        lines[0] += (
            f" ({plan.refreshing} of them recorded without {plan.refresh_missing}, to be "
            f"re-measured)"
        )
    if plan.rerunning:
        lines[0] += f" ({plan.rerunning} of them recorded, to be re-measured: --rerun)"
    if plan.running:
        lines[0] += f" ({plan.running} of them running now in another sweep)"
    if not left:
        return "\n".join(lines)
    lines.append("to run  recorded  median s  task / dataset / model / attack / defense")
    for (task, dataset, model, attack, defense), group in left:
        median = group.median_seconds
        shown = "—" if median is None else f"{median:.0f}"
        names = " / ".join([task, dataset, model, attack or "-", defense or "-"])
        lines.append(f"{group.to_run:>6}  {group.recorded:>8}  {shown:>8}  {names}")
    seconds, unknown = plan.estimate_seconds()
    note = f"about {seconds / 3600:.1f} h of runs, one at a time, at the recorded medians"
    if unknown:
        note += f"; {unknown} group(s) have no recorded run to go by (—)"
    lines.append(note)
    for made_at, count in sorted(plan.other_threads.items()):
        lines.append(
            f"note: {count} record(s) of these groups were made at {made_at} torch thread(s) and "
            f"this plan is at {plan.threads}; the count is part of a run's key, so they are not "
            f"counted: plan with --threads {made_at} to match them"
        )
    return "\n".join(lines)
