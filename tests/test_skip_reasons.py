"""A skipped test says which command installs what it is missing."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# A reason names one of these, followed by what to run.
INSTALLERS = ("make ", "apt-get install", "pip install")
SKIPS = {"skip", "skipif", "importorskip"}


def _text(node: ast.expr) -> str:
    """A reason's literal text; the parts an f-string fills in at run time count as blank."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(part) if isinstance(part, ast.Constant) else " "
                       for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    return ""


def skip_reasons(source: str) -> list[str]:
    """Every reason given to ``pytest.skip``, ``skipif`` or ``importorskip`` in ``source``."""
    reasons = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in SKIPS):
            continue
        given = [keyword.value for keyword in node.keywords if keyword.arg == "reason"]
        if node.func.attr == "skip" and node.args:
            given.append(node.args[0])
        reasons += [_text(reason) for reason in given] or ["(no reason)"]
    return reasons


def test_reasons_are_found_in_every_form_they_take() -> None:
    source = '''
pytest.importorskip("x", reason="a")
pytestmark = pytest.mark.skipif(True, reason="b " "c")
pytest.skip(f"d {value}: run `make e`")
pytest.skip(reason="f" + "g")
pytest.skip()
'''
    assert skip_reasons(source) == ["a", "b c", "d  : run `make e`", "fg", "(no reason)"]


def test_every_skip_in_the_suite_names_the_command_that_installs_what_is_missing() -> None:
    found = {}
    for path in sorted(TESTS.glob("*.py")):
        if path.name != Path(__file__).name:
            found.update({f"{path.name}: {reason}": reason
                          for reason in skip_reasons(path.read_text())})
    assert any("make chromium" in reason for reason in found.values())
    assert [where for where, reason in found.items()
            if not any(installer in reason for installer in INSTALLERS)] == []
