"""A report's bound on rows: past ``limit``, its smallest groups fold into one row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# What every key column of the folded row shows: a label no tracking value is likely to be.
OTHER = "(other)"


def bounded(groups: Mapping[tuple[Any, ...], T], limit: int,
            size: Callable[[T], tuple[int, ...]]) -> tuple[list[tuple[Any, ...]], list[T]]:
    """The keys of the groups kept, sorted, and the groups folded into the other row.

    At most ``limit`` rows in all: when there are more groups, the ``limit - 1`` largest by
    ``size`` stay (ties go to the smaller key, so the same groups give the same report) and
    the rest fold into one. Nothing is folded within the limit.
    """
    if len(groups) <= limit:
        return sorted(groups), []
    # Largest first; among equal sizes, the smaller key first.
    ranked = sorted(sorted(groups), key=lambda key: tuple(-n for n in size(groups[key])))
    kept = ranked[:limit - 1]
    return sorted(kept), [groups[key] for key in ranked[limit - 1:]]
