"""Name -> class registries, one per component family (datasets, models, attacks, defenses).

A registry is an object owned by the family's base module, never a global dict of dicts.
Classes register themselves with a decorator; the runner and the CLI resolve names only
through a registry, so adding a component never means editing the runner.

Example:
    >>> ATTACKS = Registry("attack")
    >>> @ATTACKS.register("sba")
    ... class SBA: ...
    >>> ATTACKS.get("SBA") is SBA
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from gnnbackdoor.errors import UnknownNameError

T = TypeVar("T")


def normalise_name(name: str) -> str:
    """Fold a component name for lookups: case, '-' and '_' do not matter."""
    return name.strip().lower().replace("_", "-")


class Registry(Generic[T]):
    """Maps names (matched without regard to case, '-' or '_') to classes of one family.

    Args:
        kind: What the family is called in messages, e.g. ``"attack"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[str, T]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that registers its class under ``name`` (its display spelling)."""

        def decorator(obj: T) -> T:
            key = normalise_name(name)
            if key in self._entries and self._entries[key][1] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[key] = (name, obj)
            obj.registered_name = name  # type: ignore[attr-defined]
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The class registered under ``name``.

        Raises:
            UnknownNameError: one line naming the valid choices.
        """
        key = normalise_name(name)
        if key not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}"
            )
        return self._entries[key][1]

    def canonical(self, name: str) -> str:
        """The display spelling of a registered name (``cora`` -> ``Cora``)."""
        self.get(name)
        return self._entries[normalise_name(name)][0]

    def names(self) -> list[str]:
        """Registered names in their display spelling, sorted without regard to case."""
        return sorted((display for display, _ in self._entries.values()), key=str.lower)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self._entries[normalise_name(name)][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalise_name(name) in self._entries

    def __len__(self) -> int:
        return len(self._entries)
