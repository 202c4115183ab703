"""Typed settings of components: declared types, ranges and closed choices, one converter.

Every settable value of the toolkit (a model spec, an attack, a defense, a training or data
configuration) is an init field of a stdlib dataclass whose annotation declares what it
accepts, e.g. ``lr: PositiveFloat = 0.01``, ``pool: Readout = Readout.MEAN`` (a ``StrEnum``
for a closed choice) or ``recovery: RecoveryConfig`` (a nested section). :func:`coerce` is the
one converter: it turns Python values, YAML values or ``--set`` text into typed values with
pydantic (a ``TypeAdapter`` per field annotation, floats always finite) and reports a bad value
in one line that names the key, the value and what is accepted. Dataclasses that derive from
:class:`Settings` run it in ``__post_init__``, so a component built directly, with defaults or
from YAML, is checked the same way as one built from the command line.

The fields are validated one by one (not the dataclass as a whole) so that validation does not
construct the dataclass again from inside its own ``__post_init__``; cross-field rules stay in
the class's ``__post_init__`` after ``super().__post_init__()``.

Records keep plain JSON: :func:`as_dict` writes enums as their values and nested sections as
dicts.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Union

import annotated_types
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from gnnbackdoor.errors import ConfigError

# --------------------------------------------------------------------------- declared ranges

#: An integer >= 1 (epochs, widths, batch sizes, counts).
PositiveInt = Annotated[int, Field(ge=1)]
#: An integer >= 0 (warm-up epochs, patience, seeds, class indices).
NonNegativeInt = Annotated[int, Field(ge=0)]
#: A finite number > 0 (learning rates, regularisers that must not vanish).
PositiveFloat = Annotated[float, Field(gt=0)]
#: A finite number >= 0 (weight decay, loss weights, clip norms).
NonNegativeFloat = Annotated[float, Field(ge=0)]
#: A share in ``(0, 1]`` (ratios, rates, keep fractions).
Fraction = Annotated[float, Field(gt=0, le=1)]
#: A share in ``(0, 1)`` (split fractions: both sides non-empty).
OpenFraction = Annotated[float, Field(gt=0, lt=1)]
#: A share in ``[0, 1)`` (a held-out share where 0 means "hold nothing out").
HoldoutShare = Annotated[float, Field(ge=0, lt=1)]
#: A probability in ``[0, 1]``.
Probability = Annotated[float, Field(ge=0, le=1)]

_CONFIG = ConfigDict(allow_inf_nan=False)
_NONE_TEXT = {"none", "null", ""}


def is_section(annotation: Any) -> bool:
    """Whether a field's annotation is a nested settings section (a dataclass)."""
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, m...]`` -> ``(T, [m...])`` with pydantic ``FieldInfo`` opened up."""
    metadata: list[Any] = []
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        for item in extra:
            metadata.extend(getattr(item, "metadata", [item]))
        return base, metadata
    return annotation, metadata


def _options(annotation: Any) -> tuple[list[Any], bool]:
    """The non-None members of a union and whether ``None`` is one of them."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = typing.get_args(annotation)
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bounds(metadata: list[Any]) -> str:
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            low = ("(", item.gt)
        elif isinstance(item, annotated_types.Ge):
            low = ("[", item.ge)
        elif isinstance(item, annotated_types.Lt):
            high = (")", item.lt)
        elif isinstance(item, annotated_types.Le):
            high = ("]", item.le)
    if low and high:
        return f" in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return f" {'>' if low[0] == '(' else '>='} {_number(low[1])}"
    if high:
        return f" {'<' if high[0] == ')' else '<='} {_number(high[1])}"
    return ""


def describe(annotation: Any) -> str:
    """What a field accepts, in words: ``a finite number in (0, 1]``, ``one of mean, sum``."""
    options, nullable = _options(annotation)
    parts = []
    for option in options:
        base, metadata = _unwrap(option)
        if isinstance(base, type) and issubclass(base, enum.Enum):
            parts.append("one of " + ", ".join(str(m.value) for m in base))
        elif base is bool:
            parts.append("true or false")
        elif base is int:
            parts.append("an integer" + _bounds(metadata))
        elif base is float:
            parts.append("a finite number" + _bounds(metadata))
        elif base is str:
            parts.append("text")
        elif typing.get_origin(base) in (list, tuple):
            (inner, *_) = typing.get_args(base) or (str,)
            parts.append(f"a comma-separated list of ({describe(inner)})")
        elif is_section(base):
            parts.append(f"a section with keys {', '.join(field_types(base))}")
        else:
            parts.append(getattr(base, "__name__", str(base)))
    return " or ".join(parts + (["none"] if nullable else []))


def bounds_of(annotation: Any) -> dict[str, float]:
    """The declared ``gt``/``ge``/``lt``/``le`` of a numeric field (empty if none)."""
    found: dict[str, float] = {}
    for option in _options(annotation)[0]:
        for item in _unwrap(option)[1]:
            for name in ("gt", "ge", "lt", "le"):
                if isinstance(item, getattr(annotated_types, name.capitalize())):
                    found[name] = getattr(item, name)
    return found


def base_type(annotation: Any) -> Any:
    """The field's type without ``Optional`` and range metadata (``int``, an enum, ...)."""
    return _unwrap(_options(annotation)[0][0])[0]


# --------------------------------------------------------------------------- the converter


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Init fields of dataclass ``cls`` -> their resolved annotations (ranges included)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


@functools.cache
def _adapter(cls: type, name: str) -> TypeAdapter:
    return TypeAdapter(field_types(cls)[name], config=_CONFIG)


def _show(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    return _number(value) if isinstance(value, float) else str(value)


def _from_text(annotation: Any, text: str) -> Any:
    """What pydantic cannot read from text itself: ``none``/``null`` for an optional field
    and comma- or space-separated lists."""
    options, nullable = _options(annotation)
    if nullable and text.strip().lower() in _NONE_TEXT:
        return None
    base = _unwrap(options[0])[0] if len(options) == 1 else None
    if typing.get_origin(base) in (list, tuple):
        return [part for part in text.replace(",", " ").split() if part]
    return text


def coerce_field(cls: type, name: str, value: Any, key: str) -> Any:
    """Field ``name`` of ``cls`` set to ``value`` (text or typed) as its typed value.

    Raises:
        ConfigError: one line ``key=value: expected ...`` naming the accepted range/choices.
    """
    annotation = field_types(cls)[name]
    if is_section(annotation):
        if isinstance(value, annotation):
            return value
        if isinstance(value, Mapping):
            return build(annotation, dict(value), key)
        raise ConfigError(
            f"{key} is a section; set its keys ({', '.join(field_types(annotation))})"
        )
    if isinstance(value, str):
        value = _from_text(annotation, value)
    try:
        return _adapter(cls, name).validate_python(value)
    except ValidationError:
        raise ConfigError(f"{key}={_show(value)}: expected {describe(annotation)}") from None


def coerce(cls: type, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Typed values for (some of) the init fields of dataclass ``cls``.

    Args:
        cls: A settings dataclass.
        values: Field name -> value (``--set`` text, a YAML value or a Python value; a nested
            section may be given as a mapping of its own keys).
        prefix: Where ``cls`` sits, for messages (``"defense"``, ``"defense.recovery"``).

    Raises:
        ConfigError: an unknown key (listing the valid ones) or a value out of range.
    """
    types_ = field_types(cls)
    typed = {}
    for name, value in values.items():
        if name not in types_:
            raise ConfigError(
                f"{prefix}.{name}: unknown key; valid keys under {prefix}: {valid_keys(cls)}"
            )
        typed[name] = coerce_field(cls, name, value, f"{prefix}.{name}")
    return typed


def valid_keys(cls: type) -> str:
    """The keys of ``cls`` at its own level, nested sections shown as ``name.<key>``."""
    return ", ".join(
        f"{name}.<key>" if is_section(annotation) else name
        for name, annotation in sorted(field_types(cls).items())
    )


def build(cls: type, values: Mapping[str, Any], what: str) -> Any:
    """Instantiate dataclass ``cls`` from ``values`` through the converter; every error,
    cross-field rules included, is one line."""
    typed = coerce(cls, values, what)
    try:
        return cls(**typed)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {what} settings: {error}") from None


class Settings:
    """Base of settings dataclasses: every init field is converted and range-checked by
    :func:`coerce` when the instance is made. Subclasses with their own ``__post_init__``
    call ``super().__post_init__()`` first."""

    def __post_init__(self) -> None:
        cls = type(self)
        label = getattr(cls, "registered_name", cls.__name__)
        current = {name: getattr(self, name) for name in field_types(cls)}
        for name, value in coerce(cls, current, label).items():
            object.__setattr__(self, name, value)


def as_dict(obj: Any) -> dict[str, Any]:
    """The init fields of a settings dataclass as plain JSON values, for records and keys:
    enums become their values, nested sections dicts (recursively), tuples lists."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@functools.cache
def _number_adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation, config=_CONFIG)


def check_value(annotation: Any, value: Any, key: str) -> Any:
    """One value outside a dataclass (a command-line number, ...) through the same
    converter: ``check_value(PositiveInt, "3", "--threads") == 3``.

    Raises:
        ConfigError: ``key=value: expected ...``.
    """
    if isinstance(value, str):
        value = _from_text(annotation, value)
    try:
        return _number_adapter(annotation).validate_python(value)
    except ValidationError:
        raise ConfigError(f"{key}={_show(value)}: expected {describe(annotation)}") from None
