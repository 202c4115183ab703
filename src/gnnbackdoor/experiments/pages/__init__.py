"""Reproduction pages: each is a function from records to Markdown, registered by name and
rendered by ``gnnbackdoor report DIR --page NAME``. Pages read only records and the
published tables shipped in ``experiments/reference``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gnnbackdoor.registry import Registry

PageRenderer = Callable[[list[dict[str, Any]]], str]

PAGES: Registry[PageRenderer] = Registry("report page")


def load_pages() -> None:
    """Import every page module of this folder (registers them)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name != "common":
            importlib.import_module(f"{__name__}.{module.name}")
