"""The suite's slowest files start first, so the workers finish together.

``make test`` runs one file per worker at a time (``--dist loadfile``) and hands out files
in collection order. Collected alphabetically, a long file that happens to come last
(the worker supervisor's, the benchmark's smoke run) keeps one core busy for a minute
while the others have nothing left to do. Started first, the long files run side by side
and the many short ones fill in around them. Only the order changes, and only between
files: a test's own file still runs its tests in the order they are written.
"""

from __future__ import annotations

import pytest

# The longest files, longest first (``make test PYTEST_ARGS=--durations=100``); a file
# left out runs after these, in its usual place.
SLOWEST_FIRST = (
    "test_binary.py",
    "test_loadtests.py",
    "test_properties.py",
    "test_workers_supervisor.py",
    "test_browser.py",
    "test_postgres_nodes.py",
    "test_served.py",
    "test_endpoint_cli.py",
    "test_chaos.py",
    "test_postgres_workers.py",
    "test_report_properties.py",
    "test_currency_properties.py",
    "test_packaging.py",
)
_RANK = {name: rank for rank, name in enumerate(SLOWEST_FIRST)}


def by_file_length(items: list[pytest.Item]) -> None:
    """Put the items of the slowest files first, keeping every other order as it is."""
    items.sort(key=lambda item: _RANK.get(item.path.name, len(_RANK)))
