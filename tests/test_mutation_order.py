"""The order `make mutate` runs a mutant's tests in (tests/mutation_order.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.mutation_order import MutationOrder, mutated_function


def test_only_a_mutants_run_names_a_function() -> None:
    assert mutated_function("storage.money.x_round_money__mutmut_3") == (
        "storage.money.x_round_money")
    assert mutated_function("actors.actor.xǁTransactionActorǁask__mutmut_17") == (
        "actors.actor.xǁTransactionActorǁask")
    # mutmut's own runs: the clean one, the statistics, the forced failure.
    for name in ("", "stats", "fail", "storage.money.x_round_money__mutmut_orig"):
        assert mutated_function(name) is None


def run(order: MutationOrder, nodeids: str) -> list[str]:
    items = [SimpleNamespace(nodeid=nodeid) for nodeid in nodeids]
    order.pytest_collection_modifyitems(cast(list[pytest.Item], items))
    return [item.nodeid for item in items]


def fail(order: MutationOrder, nodeid: str) -> None:
    report: Any = SimpleNamespace(nodeid=nodeid, failed=True)
    order.pytest_runtest_logreport(report)


def test_killers_of_the_function_run_first_most_often_first_then_the_fastest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # mutmut runs the tests in mutants/
    Path("mutmut-stats.json").write_text(json.dumps(
        {"duration_by_test": {"a": 3.0, "b": 1.0, "c": 2.0, "d": 0.5}}))
    first = MutationOrder("storage.money.x_round_money")
    assert run(first, "abcde") == ["d", "b", "c", "a", "e"]  # unknown duration last
    fail(first, "c")
    fail(first, "a")
    fail(MutationOrder("storage.money.x_round_money"), "c")
    passed: Any = SimpleNamespace(nodeid="b", failed=False)
    first.pytest_runtest_logreport(passed)
    assert run(MutationOrder("storage.money.x_round_money"), "abcde") == [
        "c", "a", "d", "b", "e"]
    # Another function's mutants have killers of their own.
    assert run(MutationOrder("storage.money.x_money_text"), "abcde") == [
        "d", "b", "c", "a", "e"]
