"""Command line: gnnbackdoor run | sweep | report | list | records | serve | serve-model | keys.

User mistakes print one line ``gnnbackdoor: error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from gnnbackdoor import __version__
from gnnbackdoor.errors import UserError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _number(kind: str):
    """An argparse ``type`` that reads a number through the settings converter with the
    declared range ``kind`` (a name in :mod:`gnnbackdoor.settings`, or ``"Port"``): a value
    out of range stops with one line, exit 2, before any work."""

    def parse(text: str):
        from pydantic import Field

        from gnnbackdoor import settings

        annotation = (
            Annotated[int, Field(ge=1, le=65535)] if kind == "Port" else getattr(settings, kind)
        )
        try:
            return settings.check_value(annotation, text, "value")
        except UserError:
            raise argparse.ArgumentTypeError(
                f"expected {settings.describe(annotation)}, got {text!r}"
            ) from None

    parse.__name__ = kind
    return parse


def _add_set_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--set KEY=VALUE ...`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=help_text,
    )


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-mirror",
        type=Path,
        default=None,
        help="offline mirror of PyG raw files (default: $GNNBACKDOOR_DATA_MIRROR)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="dataset cache (default: $GNNBACKDOOR_CACHE or ~/.cache/gnnbackdoor/datasets)",
    )
    parser.add_argument(
        "--threads",
        type=_number("PositiveInt"),
        default=None,
        help="torch CPU threads (default: torch's own choice, usually the number of cores)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or logs")
    _add_skip_option(parser)


def _add_skip_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip malformed lines of records files (counted in a warning) instead of stopping",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gnnbackdoor", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gnnbackdoor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run one configuration for one or more seeds")
    run.add_argument("--task", required=True, help="link or graph")
    run.add_argument("--dataset", required=True)
    run.add_argument("--model", required=True)
    run.add_argument("--attack", default=None)
    run.add_argument("--defense", default=None)
    run.add_argument("--seeds", type=_number("NonNegativeInt"), nargs="+", default=[0])
    _add_set_option(run, "override a setting, e.g. train.patience=50")
    run.add_argument("--out", type=Path, required=True, help="folder of records.jsonl")
    run.add_argument(
        "--save-model",
        type=Path,
        default=None,
        help="write the trained models (weights + JSON config) into this folder: "
        "DIR/clean, DIR/backdoored, DIR/defended for one run, "
        "DIR/<task>-<dataset>-<model>-<attack>-<defense>-seed<N>/... for several",
    )
    _add_data_options(run)

    sweep = commands.add_parser("sweep", help="run every configuration of a YAML grid")
    sweep.add_argument("file", type=Path)
    sweep.add_argument("--out", type=Path, required=True)
    sweep.add_argument(
        "--save-model",
        type=Path,
        default=None,
        help="write the trained models under DIR/<task>-<dataset>-<model>-<attack>-<defense>-"
        "seed<N>/",
    )
    sweep.add_argument(
        "--executor",
        choices=["sequential", "local", "ray"],
        default="sequential",
        help="where runs execute: one after the other here (default), a local process pool, "
        "or Ray (docs/distributed.md)",
    )
    sweep.add_argument(
        "--jobs",
        type=_number("PositiveInt"),
        default=None,
        help="runs at a time: local pool size (default: cores // --threads), or a local Ray "
        "instance's CPUs / --threads",
    )
    sweep.add_argument(
        "--address",
        default=None,
        help="Ray cluster: auto or HOST:PORT of its head (default: start a local instance)",
    )
    sweep.add_argument(
        "--plan",
        action="store_true",
        help="run nothing: list the runs not yet recorded in --out, grouped, beside the "
        "median wall-clock seconds of the group's recorded runs",
    )
    sweep.add_argument(
        "--refresh-missing",
        metavar="FIELD",
        default=None,
        help="also run again the recorded runs whose record lacks the metric FIELD "
        "(metrics.<name>, e.g. metrics.defended_target_no_trigger, a metric added after they "
        "were made); each new record replaces its old one, which moves to superseded.jsonl",
    )
    sweep.add_argument(
        "--rerun",
        metavar="KEY",
        action="append",
        default=[],
        help="also run again the recorded run of the sweep with this key (repeatable; the "
        "key field of a record); its new record replaces the old one, which moves to "
        "superseded.jsonl. With GNNBACKDOOR_STAGE_CACHE set, the run reads the stage cached "
        "for the current code, as any run does",
    )
    _add_data_options(sweep)

    report = commands.add_parser(
        "report", help="a summary per task (or the full table, or a page) from records"
    )
    report.add_argument(
        "records",
        type=Path,
        nargs="*",
        help="records.jsonl files or folders (with --page: default the page's own folders)",
    )
    report.add_argument(
        "--wide", action="store_true", help="the full table: every group, every metric"
    )
    report.add_argument(
        "--format",
        choices=["md", "csv", "json"],
        default="md",
        help="output format (default md, in points); csv and json carry fractions (0 to 1)",
    )
    report.add_argument(
        "--figures", action="store_true", help="also write PNG figures into DIR/figures/"
    )
    report.add_argument(
        "--account", action="store_true", help="end with a plain-language account of the runs"
    )
    report.add_argument("--page", default=None, help="a reproduction page (see 'list')")
    report.add_argument(
        "--templates",
        type=Path,
        default=None,
        help="folder of page templates (default docs/reproduction/templates)",
    )
    report.add_argument("--paper", type=Path, default=None, help="CSV of published figures")
    report.add_argument("--paper-columns", nargs="+", default=None)
    report.add_argument("--metrics", nargs="+", default=None)
    report.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    _add_skip_option(report)

    listing = commands.add_parser(
        "list", help="registered datasets, models, attacks, defenses, pages"
    )
    listing.add_argument(
        "--settings",
        metavar="NAME",
        default=None,
        help="print the settings of one component (e.g. gcleaner) or section (data, "
        "train-graph, train-link): keys for --set, types, defaults and ranges",
    )
    records = commands.add_parser("records", help="maintain records files")
    actions = records.add_subparsers(dest="records_command", required=True, parser_class=_Parser)
    migrate = actions.add_parser("migrate", help="re-key records to the current run identity")
    migrate.add_argument("paths", type=Path, nargs="+", help="records files or folders")
    migrate.add_argument(
        "--legacy-threads", type=int, default=None, help="torch threads of records that omit it"
    )
    migrate.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    _add_service_commands(commands)
    return parser


def _add_server_options(parser: argparse.ArgumentParser, default_max_graphs: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=_number("Port"), default=8000)
    parser.add_argument("--max-body-bytes", type=_number("PositiveInt"), default=1_048_576)
    parser.add_argument("--max-graphs", type=_number("PositiveInt"), default=default_max_graphs)
    parser.add_argument("--max-nodes", type=_number("PositiveInt"), default=1_000)
    parser.add_argument("--max-edges", type=_number("NonNegativeInt"), default=20_000)
    parser.add_argument(
        "--threads", type=_number("PositiveInt"), default=1, help="torch CPU threads per worker"
    )
    parser.add_argument(
        "--workers",
        type=_number("PositiveInt"),
        default=1,
        help="server processes sharing the port (default 1)",
    )
    parser.add_argument("--quiet", action="store_true", help="warnings only")


def _add_service_commands(commands) -> None:
    serve = commands.add_parser("serve", help="HTTP service: a shield in front of a model")
    target = serve.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", type=Path, help="folder written by --save-model")
    target.add_argument("--upstream", help="base URL of an endpoint answering /v1/predict")
    serve.add_argument("--defense", default="graphprot-tf", help="an input shield")
    _add_set_option(serve, "shield parameter, e.g. num_subgraphs=7")
    serve.add_argument("--api-keys", type=Path, required=True, help="file of key hashes")
    serve.add_argument(
        "--upstream-timeout", type=_number("PositiveFloat"), default=5.0, help="seconds"
    )
    serve.add_argument(
        "--feature-width",
        type=_number("PositiveInt"),
        default=None,
        help="node feature width (upstream mode)",
    )
    _add_server_options(serve, default_max_graphs=64)

    plain = commands.add_parser("serve-model", help="HTTP endpoint of a saved model, unshielded")
    plain.add_argument("--model", type=Path, required=True, help="folder written by --save-model")
    plain.add_argument("--api-keys", type=Path, default=None, help="file of key hashes")
    _add_server_options(plain, default_max_graphs=4096)

    keys = commands.add_parser("keys", help="API keys of the service")
    actions = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    add = actions.add_parser("add", help="create a key: print it once, store its hash in FILE")
    add.add_argument("file", type=Path)


def _location(args: argparse.Namespace):
    from gnnbackdoor.datasets import DataLocation

    kwargs = {}
    if args.data_mirror is not None:
        kwargs["mirror_dir"] = args.data_mirror
        kwargs["mirror_given_by"] = "--data-mirror"
    if args.cache is not None:
        kwargs["cache_dir"] = args.cache
    return DataLocation(**kwargs)


def _setup(args: argparse.Namespace) -> None:
    from gnnbackdoor.utils.progress import set_quiet

    set_quiet(args.quiet)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _nearest_existing(path: Path, option: str) -> Path:
    """The closest existing folder at or above ``path`` (a file on the way is an error)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{option} {path}: cannot create it, {probe} is a file")
    return probe


def _probe_folder(folder: Path, option: str, path: Path) -> None:
    """Write and remove a scratch file in the existing ``folder``: ``os.access`` says yes to
    root in ``/proc`` or on a read-only mount, a real write does not."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"{option} {path}: cannot write in {folder} ({reason})") from None


def _usable_folder(path: Path, option: str) -> None:
    """Check, before any work and without creating anything, that ``path`` is (or can become)
    a folder the command can write files in; one line otherwise. The folder itself is made
    when the first file is written into it.

    Raises:
        UserError: ``path`` is a file, lies under a file, or cannot be written in.
    """
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder")
    _probe_folder(_nearest_existing(path, option), option, path)


def _usable_file(path: Path, option: str) -> None:
    """Check, before any work and without creating anything, that the file ``path`` can be
    written (its missing folders are made at write time).

    Raises:
        UserError: ``path`` is a folder, lies under a file, or cannot be written.
    """
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder, not a file")
    if path.exists():
        try:
            with open(path, "a"):
                pass
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise UserError(f"{option} {path}: file is not writable ({reason})") from None
        return
    _probe_folder(_nearest_existing(path.parent, option), option, path)


def _write_text(path: Path, text: str, option: str) -> None:
    """Write ``text`` to ``path`` (making its folders); an OSError becomes one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"{option} {path}: cannot write it ({reason})") from None


def _check_outputs(args: argparse.Namespace) -> None:
    """``--out`` and ``--save-model`` of ``run``/``sweep``, checked before the first run
    (``--out`` itself is created with the first record)."""
    _usable_folder(args.out, "--out")
    records = args.out / "records.jsonl"
    if records.exists() or records.is_symlink():
        _usable_file(records, "--out")
    if args.save_model is not None:
        _usable_folder(args.save_model, "--save-model")


@contextlib.contextmanager
def _write_errors(args: argparse.Namespace):
    """An OSError while writing under ``--out`` or ``--save-model`` (a full disk, a folder
    removed mid-run) becomes one line; runs finished before it stay recorded."""
    try:
        yield
    except OSError as error:
        name = Path(str(error.filename)) if error.filename else None
        places = [(args.out, "--out"), (args.save_model, "--save-model")]
        for place, option in places:
            if place is not None and name is not None and name.is_relative_to(place):
                reason = error.strerror or type(error).__name__
                raise UserError(f"{option} {place}: cannot write {name} ({reason})") from None
        raise


def _check_data(specs, location) -> None:
    """Stage every dataset the specs name before the first run, so that missing files stop
    the command with one line and no progress lines before it."""
    from gnnbackdoor.datasets import DATASETS

    for name in sorted({spec.dataset for spec in specs}):
        dataset = DATASETS.get(name)()
        if dataset.folder is not None:
            dataset.stage(location)


def _cmd_run(args: argparse.Namespace) -> int:
    from gnnbackdoor.experiments.config import parse_assignments
    from gnnbackdoor.experiments.runner import RunSpec, run_all

    _setup(args)
    _check_outputs(args)
    overrides = parse_assignments(args.overrides)
    specs = [
        RunSpec(args.task, args.dataset, args.model, args.attack, args.defense, seed, overrides)
        for seed in args.seeds
    ]
    location = _location(args)
    _check_data(specs, location)
    with _write_errors(args):
        written = run_all(
            specs, args.out, location, args.save_model, skip_bad_lines=args.skip_bad_lines
        )
    _summarise(written, len(specs))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from gnnbackdoor.experiments.executors import ExecutorKind, make_executor
    from gnnbackdoor.experiments.records import FAILURES_FILE
    from gnnbackdoor.experiments.runner import run_sweep
    from gnnbackdoor.experiments.sweep import load_sweep

    _setup(args)
    if args.plan:
        return _plan_sweep(args, load_sweep(args.file))
    _check_outputs(args)
    specs = load_sweep(args.file)
    location = _location(args)
    _check_data(specs, location)
    executor = make_executor(
        ExecutorKind(args.executor), jobs=args.jobs, threads=args.threads, address=args.address
    )
    try:
        with _write_errors(args):
            result = run_sweep(
                specs,
                args.out,
                location,
                args.save_model,
                skip_bad_lines=args.skip_bad_lines,
                executor=executor,
                refresh_missing=args.refresh_missing,
                rerun=args.rerun,
            )
    finally:
        executor.close()
    _summarise(result.written, len(specs) - len(result.failed))
    if result.failed:
        print(
            f"gnnbackdoor: {len(result.failed)} of {len(specs)} run(s) failed; their errors are "
            f"in {args.out / FAILURES_FILE}; run the sweep again to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def _plan_sweep(args: argparse.Namespace, specs: list) -> int:
    """``sweep --plan``: what the sweep would run; loads no data, writes nothing."""
    from gnnbackdoor.experiments.executors import ExecutorKind, run_threads
    from gnnbackdoor.experiments.plan import format_plan, plan_sweep

    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is not a folder")
    threads = run_threads(ExecutorKind(args.executor), args.threads)
    runtime = {"threads": threads} if threads else None
    plan = plan_sweep(
        specs,
        args.out,
        runtime=runtime,
        skip_bad_lines=args.skip_bad_lines,
        refresh_missing=args.refresh_missing,
        rerun=args.rerun,
    )
    print(format_plan(plan, str(args.file), args.out))
    return 0


def _summarise(written: list[dict], total: int) -> None:
    import json

    for record in written:
        shown = {
            k: round(v, 4) if isinstance(v, float) else v for k, v in record["metrics"].items()
        }
        print(
            json.dumps(
                {
                    "dataset": record["dataset"],
                    "model": record["model"],
                    "attack": record["attack"],
                    "defense": record["defense"],
                    "seed": record["seed"],
                    "metrics": shown,
                }
            )
        )
    replaced = sum("refreshed" in record for record in written)
    logging.getLogger("gnnbackdoor").info(
        "%d run(s) recorded, %d already present%s",
        len(written),
        total - len(written),
        f"; {replaced} of them re-measured, each replacing its old record (moved to "
        f"superseded.jsonl)"
        if replaced
        else "",
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from gnnbackdoor.experiments.pages import render_page
    from gnnbackdoor.experiments.records import iter_record_files, read_records
    from gnnbackdoor.experiments.report import check_paper_csv, generic_report
    from gnnbackdoor.experiments.summary import (
        Format,
        account,
        flat_report,
        summary_report,
        wide_rows,
    )

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    if args.out:
        _usable_file(args.out, "--out")
    if args.paper is not None:
        check_paper_csv(args.paper, args.paper_columns)
    folder = None
    if args.figures and args.records:
        first = args.records[0]
        folder = (first if first.is_dir() else first.parent) / "figures"
        _usable_folder(folder, "--figures")
    fmt = Format(args.format)
    if args.page and fmt is not Format.MD:
        raise UserError("--page writes Markdown; drop --format")
    if args.page and (args.account or args.figures):
        raise UserError("--page writes its own page; drop --account/--figures")
    records: list[dict] = []
    if args.page:
        text = render_page(args.page, args.records, args.templates)
    else:
        if not args.records:
            raise UserError("name the records files or folders to report on")
        files = list(iter_record_files(args.records))
        if not files:
            raise UserError(f"no records.jsonl under {', '.join(map(str, args.records))}")
        records = [r for f in files for r in read_records(f, skip_bad_lines=args.skip_bad_lines)]
        if args.wide or args.metrics or args.paper:
            if fmt is Format.MD:
                text = generic_report(records, args.metrics, args.paper, args.paper_columns)
                text += "\n"
            elif args.paper:
                raise UserError("--paper writes Markdown; drop --format")
            else:
                text = flat_report(wide_rows(records, args.metrics), fmt)
        else:
            text = summary_report(records, fmt)
    if args.account:
        if fmt is not Format.MD:
            raise UserError("--account writes plain text; use it with --format md")
        text += "\nWhat happened:\n" + "\n".join(f"- {line}" for line in account(records)) + "\n"
    figures: list[Path] = []
    if args.figures:
        from gnnbackdoor.experiments.figures import write_figures

        try:
            figures = write_figures(records, folder)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise UserError(f"--figures: cannot write in {folder} ({reason})") from None
    if args.out:
        _write_text(args.out, text, "--out")
        print(f"report written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if args.figures:  # after the report, so that a terminal shows the list last
        print(f"{len(figures)} figure(s) written in {folder}:", file=sys.stderr)
        for path in figures:
            print(f"  {path}", file=sys.stderr)
    return 0


def _own_summary(component) -> str:
    """The first line of the component's own docstring (a registered variant's, not the one
    it inherits; ``@dataclass`` writes a signature where a class has none)."""
    doc = component.__dict__.get("__doc__") or ""
    if doc.startswith(f"{component.__name__}("):
        return ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = re.split(r"\.\s+(?=[A-Z])", paragraph)[0].rstrip(".")
    return sentence.replace("``", "")


def _describe_component(component) -> str:
    parts = [_own_summary(component), getattr(component, "reference", "")]
    return f"[{component.task}] " + "; ".join(p for p in parts if p)


def _cmd_list(args: argparse.Namespace) -> int:
    from gnnbackdoor import attacks, datasets, defenses, models
    from gnnbackdoor.experiments.pages import PAGES, load_pages

    if args.settings is not None:
        return _print_settings(args.settings)
    load_pages()
    sections = [
        (
            "datasets",
            datasets.DATASETS,
            lambda c: f"[{c.task}] {c.feature_note}; {c.reference}".rstrip("; ") + _empty_note(c),
        ),
        ("models", models.MODELS, _describe_component),
        ("attacks", attacks.ATTACKS, _describe_component),
        ("defenses", defenses.DEFENSES, _describe_component),
        (
            "report pages",
            PAGES,
            lambda c: (c.__doc__ or "").strip().splitlines()[0] if c.__doc__ else "",
        ),
    ]
    width = max(len(name) for _, registry, _ in sections for name, _ in registry.items())
    for title, registry, describe in sections:
        print(f"{title}:")
        if len(registry) == 0:
            print("  (none)")
        for name, component in registry.items():
            print(f"  {name:<{width}}  {describe(component)}")
    print("settings of one component: gnnbackdoor list --settings NAME")
    return 0


def _settings_lines(cls: type, prefix: str) -> list[tuple[str, str, str]]:
    """``(key, accepts, default)`` for every init field of settings dataclass ``cls``,
    nested sections walked (``defense.recovery.steps``)."""
    import dataclasses

    from gnnbackdoor import settings

    lines = []
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, annotation in settings.field_types(cls).items():
        key = f"{prefix}.{name}"
        base = settings.base_type(annotation)
        if settings.is_section(base):
            lines += _settings_lines(base, key)
            continue
        spec = fields[name]
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            default = "(required)"
        default = getattr(default, "value", default)
        lines.append((key, settings.describe(annotation), _show_default(default)))
    return lines


def _show_default(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "(empty)"
    return str(value)


def _print_settings(name: str) -> int:
    """``list --settings NAME``: one line per key ``--set`` accepts for NAME."""
    from gnnbackdoor import attacks, defenses, models
    from gnnbackdoor.experiments.config import DataConfig
    from gnnbackdoor.models.train_graph import GraphTrainConfig
    from gnnbackdoor.models.train_link import LinkTrainConfig
    from gnnbackdoor.registry import normalise_name

    sections = {"data": ("data", DataConfig)}
    sections["train-graph"] = ("train", GraphTrainConfig)
    sections["train-link"] = ("train", LinkTrainConfig)
    found = sections.get(name.lower())
    if found is None:
        for prefix, registry in (
            ("model", models.MODELS),
            ("attack", attacks.ATTACKS),
            ("defense", defenses.DEFENSES),
        ):
            matches = [c for n, c in registry.items() if normalise_name(n) == normalise_name(name)]
            if matches:
                found = (prefix, matches[0])
                break
    if found is None:
        raise UserError(
            f"no component or section {name!r}: name a model, attack or defense from "
            "'gnnbackdoor list', or data, train-graph, train-link"
        )
    prefix, cls = found
    lines = _settings_lines(cls, prefix)
    if not lines:
        print(f"{name}: no settings")
        return 0
    width = max(len(key) for key, _, _ in lines)
    wide = max(len(accepts) for _, accepts, _ in lines)
    print(f"{'key':<{width}}  {'accepts':<{wide}}  default")
    for key, accepts, default in lines:
        print(f"{key:<{width}}  {accepts:<{wide}}  {default}")
    return 0


def _cmd_records(args: argparse.Namespace) -> int:
    from gnnbackdoor.experiments import migrate

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    return migrate.run(args)


def _empty_note(dataset_cls) -> str:
    """What ``list`` says about a dataset's graphs without nodes (dropped at load)."""
    count = getattr(dataset_cls, "empty_graphs", 0)
    return f"; drops its {count} graphs without nodes at load" if count else ""


def _service_settings(args: argparse.Namespace, **extra):
    try:
        from gnnbackdoor.service.settings import ServiceSettings
    except ImportError as error:
        raise UserError(
            f"the service needs its extra: pip install -e .[service] ({error})"
        ) from None
    import pydantic

    values = {
        "api_keys_file": args.api_keys,
        "max_body_bytes": args.max_body_bytes,
        "max_graphs": args.max_graphs,
        "max_nodes": args.max_nodes,
        "max_edges": args.max_edges,
        "torch_threads": args.threads,
        **extra,
    }
    try:
        return ServiceSettings(**values)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        raise UserError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _run_server(app, args: argparse.Namespace, factory: str, settings) -> int:
    """Serve ``app``; with ``--workers N > 1``, N processes that each build the app with
    ``factory`` (an import path) from ``settings`` handed over as environment variables."""
    import uvicorn

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    log_level = "warning" if args.quiet else "info"
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level=log_level)
        return 0
    from gnnbackdoor.service.settings import export_to_environment

    export_to_environment(settings)
    uvicorn.run(
        factory,
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=log_level,
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from gnnbackdoor.defenses import DEFENSES, InputShield
    from gnnbackdoor.experiments.config import build, parse_assignments, split_overrides

    shield_cls = DEFENSES.get(args.defense)
    if not issubclass(shield_cls, InputShield):
        raise UserError(f"defense {args.defense!r} is not an input shield (try graphprot-tf)")
    values = split_overrides(parse_assignments(args.overrides), {"defense": shield_cls})
    shield = build(shield_cls, values["defense"], "defense")  # validates now: one-line errors
    settings = _service_settings(
        args,
        model_dir=args.model,
        upstream_url=args.upstream,
        upstream_timeout_s=args.upstream_timeout,
        feature_width=args.feature_width,
        defense=args.defense,
        defense_params=shield.params(),
    )
    from gnnbackdoor.service import create_app
    from gnnbackdoor.service.app import build_shield
    from gnnbackdoor.service.backends import build_backend
    from gnnbackdoor.service.keys import KeyStore

    KeyStore.load(args.api_keys)  # fail before binding the port
    build_shield(settings)
    if args.model is not None:
        build_backend(settings)
    return _run_server(create_app(settings), args, "gnnbackdoor.service.app:create_app", settings)


def _cmd_serve_model(args: argparse.Namespace) -> int:
    settings = _service_settings(args, model_dir=args.model)
    from gnnbackdoor.service import create_model_app
    from gnnbackdoor.service.backends import build_backend
    from gnnbackdoor.service.keys import KeyStore

    if args.api_keys is not None:
        KeyStore.load(args.api_keys)
    build_backend(settings)
    return _run_server(
        create_model_app(settings), args, "gnnbackdoor.service.app:create_model_app", settings
    )


def _cmd_keys(args: argparse.Namespace) -> int:
    from gnnbackdoor.service.keys import add_key

    _usable_file(args.file, "keys file")
    try:
        key = add_key(args.file)
    except OSError as error:
        raise UserError(f"cannot write {args.file}: {error.strerror}") from None
    print(key)
    print(f"stored its hash in {args.file}; the key is not shown again", file=sys.stderr)
    return 0


COMMANDS = {
    "run": _cmd_run,
    "sweep": _cmd_sweep,
    "report": _cmd_report,
    "list": _cmd_list,
    "records": _cmd_records,
    "serve": _cmd_serve,
    "serve-model": _cmd_serve_model,
    "keys": _cmd_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gnnbackdoor`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"gnnbackdoor: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("gnnbackdoor: interrupted; finished runs are recorded", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout left (``| head``): stop quietly, as shell tools do on SIGPIPE
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at the null device, so that flushing it at exit cannot fail again on a
    closed pipe (the Python documentation's advice for ``BrokenPipeError``)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # stdout without a file descriptor
        pass


if __name__ == "__main__":
    sys.exit(main())
