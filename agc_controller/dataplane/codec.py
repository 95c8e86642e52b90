"""attrs values ⇄ JSON-ready data, driven by the classes' type annotations.

The static needs of a data plane (`StaticNeeds`: listening ports, upstream TLS
settings with their certificates) travel from the controller to the agent as
JSON. Decoding is strict and generic: it follows the annotations of the attrs
classes, so a field added to those classes travels with no change here, and
anything that does not fit (a missing field, a wrong type, a value outside a
Literal) is a `DecodeError` rather than a half-built object.

Supported annotations: attrs classes, `tuple[X, ...]`, fixed `tuple[X, Y]`,
`X | None`, `Literal[...]`, str, int, float, bool.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, TypeVar, Union

import attrs

T = TypeVar("T")


class DecodeError(ValueError):
    """Data that does not describe a value of the expected type."""


def unstructure(value: Any) -> Any:
    """`value` as dicts, lists and scalars."""
    if attrs.has(type(value)):
        return {f.name: unstructure(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, tuple | list):
        return [unstructure(item) for item in value]
    return value


def structure(data: Any, cls: type[T]) -> T:
    """The `cls` instance `data` (from `unstructure`) describes."""
    value: T = _structure(data, cls, cls.__name__)
    return value


def _structure(data: Any, tp: Any, where: str) -> Any:
    if isinstance(tp, type) and attrs.has(tp):
        return _structure_attrs(data, tp, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if not isinstance(data, list):
            raise DecodeError(f"{where}: expected a list, got {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_structure(item, args[0], f"{where}[{i}]") for i, item in enumerate(data))
        if len(data) != len(args):
            raise DecodeError(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(
            _structure(item, a, f"{where}[{i}]")
            for i, (item, a) in enumerate(zip(data, args, strict=True))
        )
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: only `X | None` unions are supported, not {tp}")
        return _structure(data, options[0], where)
    if origin is Literal:
        if data not in args:
            raise DecodeError(f"{where}: {data!r} is not one of {', '.join(map(repr, args))}")
        return data
    if tp is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if tp in (str, int, bool):
        # bool is an int in Python, but not in JSON
        if type(data) is not tp:
            raise DecodeError(f"{where}: expected {tp.__name__}, got {type(data).__name__}")
        return data
    raise TypeError(f"{where}: cannot decode values of type {tp}")


def _structure_attrs(data: Any, cls: type[Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        if field.name not in data:
            if field.default is attrs.NOTHING:
                raise DecodeError(f"{where}.{field.name}: missing")
            continue
        kwargs[field.alias] = _structure(
            data[field.name], hints[field.name], f"{where}.{field.name}"
        )
    unknown = set(data) - {f.name for f in attrs.fields(cls)}
    if unknown:
        raise DecodeError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    return cls(**kwargs)
