"""``event-postback conversions``: status changes from the command line, on the file itself.

For the CSV of returns a buyer mails in. It works on a database no server is serving
(a served one is locked to its server: use ``POST /api/conversions/bulk`` there); the
postbacks the changes owe wait in the file and are sent by the next ``serve``.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from pathlib import Path

from actors.clock import SystemClock
from app.config.schema import Config
from app.conversions.desk import ChangeResult, ConversionDesk
from app.conversions.rules import Action
from app.edge.errors import ApiError
from app.events.caps import CapRules
from app.factory import build_store
from app.postbacks.plan import Planner
from app.serve import exits
from app.serve.exits import Refusal, check_database, claim


def read_ids(path: Path) -> list[str]:
    """Conversion ids from a CSV: its ``conversion_id`` column, or else its first column."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        rows = [row for row in csv.reader(file) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("conversion_id") if "conversion_id" in header else 0
    body = rows[1:] if "conversion_id" in header else rows
    return [row[column].strip() for row in body if len(row) > column and row[column].strip()]


def change_from_file(config: Config, action: Action, path: Path, reason: str | None) -> int:
    """Apply ``action`` to every id of ``path``; prints one line per id and a summary.

    1 when an id is unknown (the others are changed all the same); raises Refusal for a
    file or database that cannot be read.
    """
    try:
        ids = read_ids(path)
    except FileNotFoundError:
        raise Refusal(f"{path}: no such file", exits.USAGE) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Refusal(f"{path}: cannot read: {exc}", exits.USAGE) from None
    if not ids:
        sys.stderr.write(f"{path}: no conversion ids found\n")
        return exits.USAGE
    check_database(config.server.db, existing=True)
    try:
        results = asyncio.run(_change(config, action, ids, reason))
    except ApiError as refused:  # e.g. approving past a cap: nothing was changed
        sys.stderr.write(f"{path}: {refused.message}: nothing changed\n")
        return exits.FAILED
    for result in results:
        sys.stdout.write(f"{result.conversion_id}: {_describe(result)}\n")
    changed = sum(result.result == "changed" for result in results)
    unknown = [result.conversion_id for result in results if result.result == "unknown"]
    sys.stdout.write(f"{changed} changed, {len(results) - changed - len(unknown)} already, "
                     f"{len(unknown)} unknown\n")
    if unknown:
        # A script reading only the exit code must not take a partly applied file as done.
        sys.stderr.write(f"unknown conversion ids: {', '.join(dict.fromkeys(unknown))}\n")
        return exits.FAILED
    return exits.OK


async def _change(config: Config, action: Action, ids: list[str],
                  reason: str | None) -> list[ChangeResult]:
    store = build_store(config)
    claim(store, when_served=": use POST /api/conversions/bulk while it is served")
    await store.open()
    try:
        planner = Planner(config)
        caps = CapRules(config)
        desk = ConversionDesk(store, lambda: planner, SystemClock(), caps=lambda: caps)
        return await desk.change(ids, action, reason, "cli", token="cli")
    finally:
        await store.close()


def _describe(result: ChangeResult) -> str:
    if result.result == "unknown":
        return "unknown"
    return f"{result.result} {result.status}"
