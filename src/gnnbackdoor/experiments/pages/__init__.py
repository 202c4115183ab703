"""Reproduction pages: each is a function from records to Markdown, registered by name with
the records files it reads, and rendered by ``gnnbackdoor report --page NAME``.

A page's numbers come from its records and the published tables shipped in
``experiments/reference``; its prose comes from a Markdown template outside the package
(``docs/reproduction/templates/<page>.md``, see :mod:`.template`). Records are selected by
their resolved configuration (:func:`.common.where`), never by the text a user typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from gnnbackdoor.errors import UserError
from gnnbackdoor.registry import Registry

#: The file of a results folder that pages read (``superseded.jsonl`` and other files
#: beside it, or in sub-folders, are never read).
RECORDS_FILE = "records.jsonl"


class PageRenderer(Protocol):
    """``render(records, template=None) -> Markdown``; ``inputs`` are the results folders
    the page reads by default, relative to the repository root; ``optional_inputs`` those it
    also reads by default when they hold a records file (a sweep not run yet, whose rows the
    page shows as "no records yet")."""

    inputs: tuple[str, ...]
    optional_inputs: tuple[str, ...]

    def __call__(self, records: list[dict[str, Any]], template: Any = None) -> str: ...


PAGES: Registry[PageRenderer] = Registry("report page")


def page(
    name: str, inputs: Sequence[str], optional: Sequence[str] = ()
) -> Callable[[Callable], PageRenderer]:
    """Register a page renderer under ``name``, reading ``inputs`` (results folders) by
    default, and ``optional`` ones where they hold a records file."""

    def decorator(render: Callable) -> PageRenderer:
        render.inputs = tuple(inputs)  # type: ignore[attr-defined]
        render.optional_inputs = tuple(optional)  # type: ignore[attr-defined]
        return PAGES.register(name)(render)  # type: ignore[return-value]

    return decorator


def load_pages() -> None:
    """Import every page module of this folder (registers them)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("common", "template"):
            importlib.import_module(f"{__name__}.{module.name}")


def page_record_files(paths: Sequence[Path]) -> list[Path]:
    """The records files of ``paths``: a folder gives its own ``records.jsonl`` (never a
    sub-folder's, nor superseded or archived records), a file itself.

    Raises:
        UserError: a path has no records file.
    """
    files = []
    for path in map(Path, paths):
        file = path / RECORDS_FILE if path.is_dir() else path
        if not file.is_file():
            raise UserError(f"no {RECORDS_FILE} at {path}")
        files.append(file)
    return files


def default_inputs(renderer: PageRenderer) -> list[Path]:
    """The folders a page reads by default (relative to the current directory): its
    ``inputs``, and its ``optional_inputs`` that hold a records file."""
    optional = [Path(p) for p in getattr(renderer, "optional_inputs", ())]
    return [Path(p) for p in renderer.inputs] + [
        p for p in optional if (p / RECORDS_FILE).is_file()
    ]


def render_page(
    name: str, paths: Sequence[Path] | None = None, templates: Path | None = None
) -> str:
    """Page ``name`` from the records in ``paths`` (default: :func:`default_inputs`) with the
    template from ``templates`` (default: :func:`.template.default_folder`)."""
    from gnnbackdoor.experiments.pages.template import PageTemplate
    from gnnbackdoor.experiments.records import read_records

    load_pages()
    renderer = PAGES.get(name)
    files = page_record_files(list(paths) if paths else default_inputs(renderer))
    records = [r for f in files for r in read_records(f)]
    return renderer(records, PageTemplate.load(renderer.registered_name, templates))
