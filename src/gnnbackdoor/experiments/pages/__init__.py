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
    """Import the page modules (registers them)."""
    from gnnbackdoor.experiments.pages import clean_models  # noqa: F401
