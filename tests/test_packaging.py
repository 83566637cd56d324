"""What the served program imports is installed by `make serve`, not only by the dev extras."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("app", "actors", "storage")


def _requirement_name(requirement: str) -> str:
    name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
    return name.lower().replace("_", "-")


def _imported_top_level_names() -> set[str]:
    names: set[str] = set()
    for package in RUNTIME_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_of_the_program_is_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(requirement) for requirement in project["dependencies"]}
    distributions = packages_distributions()
    missing = []
    for name in sorted(_imported_top_level_names()):
        if name in RUNTIME_PACKAGES or name in sys.stdlib_module_names or name == "__future__":
            continue
        provided_by = {dist.lower().replace("_", "-") for dist in distributions.get(name, [])}
        assert provided_by, f"{name} is imported but not installed at all"
        if not provided_by & declared:
            missing.append(f"{name} (from {', '.join(sorted(provided_by))})")
    assert missing == [], f"imported by the program but not in [project] dependencies: {missing}"
