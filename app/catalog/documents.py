"""The catalog as data: its campaigns and sources as the JSON the API shows, checked by the
same code as a config file, and written back as a config file's TOML.

A document is ``{"campaigns": [...], "sources": [...]}``, each entry exactly its TOML table
as JSON (money as decimal text). Every check a config file passes, a document passes with
the rest of the config in force: one wrong entry is refused with the one-line diagnosis
``check-config`` would give the same catalog in a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import msgspec
import tomli_w

from app.config.diagnosis import explain
from app.config.schema import CampaignConfig, Config, ConfigError, SourceConfig, first_problem

Kind = Literal["campaigns", "sources"]
KINDS: tuple[Kind, ...] = ("campaigns", "sources")
# Each kind's entry type and the key that names an entry.
ENTRY: dict[Kind, tuple[type[msgspec.Struct], str]] = {
    "campaigns": (CampaignConfig, "cid"), "sources": (SourceConfig, "pid")}
Document = dict[str, list[dict[str, Any]]]


def document_of(config: Config) -> Document:
    """The campaigns and sources of ``config`` as a document."""
    return {kind: msgspec.to_builtins(getattr(config, kind)) for kind in KINDS}


def applied(config: Config, document: Mapping[str, Any], origin: str, *,
            check: bool = True) -> Config:
    """``config`` with its campaigns and sources those of ``document``; raises ConfigError
    with the one-line diagnosis of the first rule the result breaks (with ``check``; the
    schema's own rules always)."""
    whole = msgspec.to_builtins(config)
    for kind in KINDS:
        whole[kind] = document.get(kind, [])
    try:
        new = msgspec.convert(whole, Config)
    except msgspec.ValidationError as exc:
        place, problem = explain(exc, Config)
        raise ConfigError(f"{origin}: {place}: {problem}") from None
    found = first_problem(new) if check else None
    if found is not None:
        raise ConfigError(f"{origin}: {found[0]}: {found[1]}")
    return new


def entry(document: Mapping[str, Any], kind: Kind, key: str) -> dict[str, Any] | None:
    """The campaign (by cid) or source (by pid) of ``document``, or None."""
    name = ENTRY[kind][1]
    return next((item for item in document.get(kind, []) if item[name] == key), None)


def parsed_entry(body: bytes, document: Mapping[str, Any], kind: Kind, key: str,
                 origin: str) -> dict[str, Any]:
    """A JSON body as the entry ``key`` of ``kind``: its id may be left out, and must match
    ``key`` if sent. A wrong one raises ConfigError, placed where it would go in the
    document (``campaigns[2].events[0].approval``), as check-config places it in a file."""
    entry_type, name = ENTRY[kind]
    index = _index(document, kind, key)
    try:
        fields = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError:
        raise ConfigError(f"{origin}: {kind}[{index}]: expected a JSON object") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{origin}: JSON syntax: {exc}") from None
    given = fields.setdefault(name, msgspec.Raw(msgspec.json.encode(key)))
    if msgspec.json.decode(given) != key:
        raise ConfigError(f"{origin}: {kind}[{index}].{name}: must be {key!r}, as in the path")
    try:
        parsed = msgspec.json.decode(msgspec.json.encode(fields), type=entry_type)
    except msgspec.ValidationError as exc:
        place, problem = explain(exc, entry_type)
        where = "" if place == "top level" else f".{place}"
        raise ConfigError(f"{origin}: {kind}[{index}]{where}: {problem}") from None
    built: dict[str, Any] = msgspec.to_builtins(parsed)
    return built


def replaced(document: Mapping[str, Any], kind: Kind, key: str,
             new: dict[str, Any] | None) -> Document:
    """``document`` with entry ``key`` of ``kind`` replaced by ``new`` in its place (added
    last if it was not there), or removed when ``new`` is None."""
    result: Document = {other: list(document.get(other, [])) for other in KINDS}
    items = result[kind]
    index = _index(document, kind, key)
    if index < len(items):
        del items[index]
    if new is not None:
        items.insert(index, new)
    return result


def _index(document: Mapping[str, Any], kind: Kind, key: str) -> int:
    """Where entry ``key`` is in ``document``, or where a new one goes (last)."""
    items = document.get(kind, [])
    name = ENTRY[kind][1]
    return next((i for i, item in enumerate(items) if item[name] == key), len(items))


def toml_text(document: Mapping[str, Any]) -> str:
    """The document as a config file's ``[[sources]]`` and ``[[campaigns]]``: loaded as a
    config file, or imported into an empty database, it gives the same catalog.

    Money is written as a TOML number when the number reads back as the same text, as a
    string otherwise (TOML numbers are read through binary floats)."""
    tables = {}
    for kind in ("sources", "campaigns"):
        entries = msgspec.convert(document.get(kind, []), list[ENTRY[kind][0]])  # type: ignore[misc]
        tables[kind] = _toml_value(msgspec.to_builtins(entries, builtin_types=(Decimal,)))
    return tomli_w.dumps(tables)


def _toml_value(value: Any) -> Any:
    """A document value as TOML writes it: no nulls (left out means the default)."""
    if isinstance(value, dict):
        return {key: _toml_value(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_toml_value(item) for item in value]
    if isinstance(value, Decimal):
        return _money(value)
    return value


def _money(number: Decimal) -> int | Decimal | str:
    """An amount as TOML writes it so that it reads back as the same decimal text."""
    text = str(number)
    if number.is_finite() and text.lstrip("-").isdigit():
        return int(text)
    if number.is_finite() and str(Decimal(repr(float(number)))) == text:
        return number
    return text
