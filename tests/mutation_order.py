"""Under `make mutate`: run first the tests that killed this function's other mutants.

mutmut runs, for each mutant, every test that calls the mutated function and stops at the
first failure, in no particular order. The mutants of a function most tests call are
mostly killed by the same few tests, so those run first (the ones that failed under the
function's earlier mutants, most often first), then the rest fastest first: a killed
mutant costs a test or two instead of everything that happened to come before its killer.
Only the order changes: a surviving mutant still runs every one of its tests.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import pytest

# Both relative to mutants/, where mutmut runs the tests.
KILLERS = Path("mutmut-killers")
STATS = Path("mutmut-stats.json")


def mutated_function(mutant: str) -> str | None:
    """`storage.money.x_round_money__mutmut_3` -> `storage.money.x_round_money`;
    None outside a mutant's run (mutmut's clean and stats runs)."""
    function, sep, number = mutant.rpartition("__mutmut_")
    return function if sep and number.isdigit() else None


class MutationOrder:
    def __init__(self, function: str) -> None:
        self.killers = KILLERS / f"{function}.txt"

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        killed = (Counter(self.killers.read_text().split()) if self.killers.exists()
                  else Counter[str]())
        durations: dict[str, float] = (json.loads(STATS.read_text())["duration_by_test"]
                                       if STATS.exists() else {})
        items.sort(key=lambda item: (-killed[item.nodeid],
                                     durations.get(item.nodeid, math.inf)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            KILLERS.mkdir(exist_ok=True)
            # One short line per append: the two workers' appends do not interleave.
            with self.killers.open("a") as file:
                file.write(f"{report.nodeid}\n")


def register(config: pytest.Config) -> None:
    function = mutated_function(os.environ.get("MUTANT_UNDER_TEST", ""))
    if function is not None:
        config.pluginmanager.register(MutationOrder(function), "mutation-order")
