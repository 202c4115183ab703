"""Page templates: the prose of a reproduction page, kept as Markdown outside the package
(``docs/reproduction/templates/<page>.md``), with ``${name}`` placeholders that the page's
code fills with values computed from records (``string.Template`` syntax; ``$$`` is a
literal ``$``).

A template may define *fragments*, pieces of prose a page repeats or shows only when it
has records for them::

    <!-- fragment tally -->
    Measured rows: ${rows}; ...
    <!-- end -->

Fragments are cut out of the page's text and filled on request (:meth:`PageTemplate.fragment`).
Lines of the form ``<!-- note: ... -->`` are comments for whoever edits the template and never
reach the page. Hand-written rather than a template engine: the pages need substitution and
named pieces only, and ``string.Template`` does the substitution.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from string import Template
from typing import Any

from gnnbackdoor.errors import UserError

#: Environment variable naming the templates folder (else :func:`default_folder`).
TEMPLATES_ENV = "GNNBACKDOOR_PAGE_TEMPLATES"

_FRAGMENT = re.compile(r"^<!-- fragment (\w+) -->\n(.*?)^<!-- end -->\n", re.S | re.M)
_NOTE = re.compile(r"^<!-- note:.*?-->\n", re.S | re.M)


def default_folder() -> Path:
    """``$GNNBACKDOOR_PAGE_TEMPLATES``, else ``docs/reproduction/templates`` of the source
    checkout this package runs from, else of the current directory."""
    if os.environ.get(TEMPLATES_ENV):
        return Path(os.environ[TEMPLATES_ENV])
    checkout = Path(__file__).resolve().parents[4] / "docs" / "reproduction" / "templates"
    if checkout.is_dir():
        return checkout
    return Path("docs") / "reproduction" / "templates"


class PageTemplate:
    """The template of one page.

    Args:
        text: The template's Markdown.
        source: Where it came from (for messages).
    """

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.folder = Path(source).parent
        text = _NOTE.sub("", text)
        self.fragments = {name: body for name, body in _FRAGMENT.findall(text)}
        self.text = _FRAGMENT.sub("", text)

    @classmethod
    def load(cls, page: str, folder: Path | None = None) -> PageTemplate:
        """The template ``<folder>/<page>.md``.

        Raises:
            UserError: the file does not exist.
        """
        path = Path(folder or default_folder()) / f"{page.replace('-', '_')}.md"
        if not path.is_file():
            raise UserError(
                f"no template for page {page!r} at {path} (set --templates or ${TEMPLATES_ENV})"
            )
        return cls(path.read_text(), str(path))

    def data(self, name: str) -> list[dict[str, str]]:
        """Rows of ``data/<name>`` beside the template: figures measured outside the records
        (e.g. another code base run on this machine), kept as CSV rather than typed in code.

        Raises:
            UserError: the file does not exist.
        """
        from gnnbackdoor.experiments.report import read_csv

        path = self.folder / "data" / name
        if not path.is_file():
            raise UserError(f"{self.source}: no data file {path}")
        return read_csv(path)

    def fragment(self, name: str, **values: Any) -> str:
        """Fragment ``name`` filled with ``values`` (without its final newline).

        Raises:
            UserError: no such fragment, or a placeholder without a value.
        """
        if name not in self.fragments:
            raise UserError(f"{self.source}: no fragment {name!r}")
        return self._fill(self.fragments[name], values, f"fragment {name!r}").rstrip("\n")

    def render(self, **values: Any) -> str:
        """The page: the template's text (fragments removed) filled with ``values``,
        ending in exactly one newline."""
        return self._fill(self.text, values, "page").rstrip("\n") + "\n"

    def _fill(self, text: str, values: dict[str, Any], what: str) -> str:
        try:
            return Template(text).substitute({k: str(v) for k, v in values.items()})
        except KeyError as missing:
            raise UserError(f"{self.source}: {what} needs a value for {missing}") from None
        except ValueError as error:
            raise UserError(f"{self.source}: {what}: {error}") from None
