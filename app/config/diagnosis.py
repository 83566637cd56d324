"""Turning a schema error into a one-line diagnosis that says what would have been right.

msgspec names the place and the problem (``server``: unknown field ``prot``); the schema
knows the rest: the fields a table takes and the values a setting allows, so the line can
say "did you mean `port`?" or list the allowed values.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec
from msgspec import inspect

_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]*)`")
_ENUM = re.compile(r"Invalid enum value '(?P<value>[^']*)'")
_STEP = re.compile(r"(?P<name>[^.\[\]]+)|\[(?P<index>\d+)\]")


def split_error(message: str) -> tuple[str, str]:
    """'Expected `int`, got `str` - at `$.server.port`' -> ('server.port', 'Expected ...')."""
    problem, sep, where = message.rpartition(" - at `")
    if not sep:
        return "top level", message
    place = where.rstrip("`").removeprefix("$").removeprefix(".") or "top level"
    return place, problem


def explain(error: msgspec.ValidationError, root: type[msgspec.Struct]) -> tuple[str, str]:
    """The place and the problem of ``error`` in a config of type ``root``, with a hint."""
    place, problem = split_error(str(error))
    found = _type_at(inspect.type_info(root), "" if place == "top level" else place)
    if unknown := _UNKNOWN.fullmatch(problem):
        # A tagged union (a payout) takes the fields of any of its tables.
        tables = found.types if isinstance(found, inspect.UnionType) else (found,)
        names = [field.encode_name for table in tables
                 if isinstance(table, inspect.StructType) for field in table.fields]
        close = difflib.get_close_matches(unknown["name"], names, n=1)
        if close:
            problem += f" (did you mean `{close[0]}`?)"
    elif (wrong := _ENUM.fullmatch(problem)) and isinstance(found, inspect.LiteralType):
        allowed = sorted(str(value) for value in found.values)
        problem += f" (allowed: {', '.join(repr(value) for value in allowed)}"
        close = difflib.get_close_matches(wrong["value"], allowed, n=1)
        problem += f"; did you mean '{close[0]}'?)" if close else ")"
    return place, problem


def _type_at(found: inspect.Type | None, place: str) -> inspect.Type | None:
    """The schema type at ``place`` (``campaigns[0].events[1].approval``), if it is one."""
    for step in _STEP.finditer(place):
        found = _unwrapped(found)
        if step["index"] is not None:
            found = found.item_type if isinstance(found, inspect.ListType) else None
        elif isinstance(found, inspect.StructType):
            found = next((field.type for field in found.fields
                          if field.encode_name == step["name"]), None)
        else:
            return None
    return _unwrapped(found)


def _unwrapped(found: Any) -> inspect.Type | None:
    """An optional value's own type (``X | None`` -> ``X``); constraints are looked through."""
    if isinstance(found, inspect.UnionType):
        kinds = [kind for kind in found.types if not isinstance(kind, inspect.NoneType)]
        found = kinds[0] if len(kinds) == 1 else found
    if isinstance(found, inspect.Metadata):
        found = found.type
    return found if isinstance(found, inspect.Type) else None
