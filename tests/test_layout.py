"""The layout a newcomer reads: app/ by capability, storage/ by what is shared and by
database, and imports that only point down or sideways."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "actors", "storage")

# app/'s capability folders, and what may sit beside them at its top.
CAPABILITIES = {"edge", "events", "config", "observe", "serve", "routes", "postbacks",
                "conversions", "reports", "catalog"}
TOP = {"__init__.py", "__main__.py", "factory.py", "services.py", "demo.toml", "static"}
# Inside app/, a module imports only from its own rank or below: ``python -m app`` runs
# the command line, the command line builds the app, the factory wires the routes, the
# routes use the services, and the services hold what the capabilities provide.
RANKS = {"app.__main__": 5, "app.serve": 4, "app.factory": 3, "app.routes": 2,
         "app.services": 1}
LONGEST = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module of the project that ``path`` imports, however it is spelled."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from app.edge import errors` imports the module app.edge.errors.
            names.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in MODULES)
    return {name for name in names if name.split(".")[0] in PACKAGES}


def _rank(module: str) -> int:
    for prefix, rank in RANKS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return 0


def test_the_top_of_app_names_its_capabilities() -> None:
    entries = {path.name for path in (ROOT / "app").iterdir() if path.name != "__pycache__"}
    assert entries >= CAPABILITIES
    assert entries - CAPABILITIES == TOP
    assert len(TOP) <= 10


def test_storage_keeps_sqlite_beside_postgres() -> None:
    assert (ROOT / "storage" / "sqlite" / "store.py").is_file()
    assert (ROOT / "storage" / "postgres" / "store.py").is_file()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("app")))
def test_storage_and_actors_never_import_app(module: str) -> None:
    assert not {name for name in _imports(MODULES[module]) if name.startswith("app")}


@pytest.mark.parametrize("module", sorted(
    m for m in MODULES if m.startswith("storage") and not m.startswith(
        ("storage.sqlite", "storage.postgres"))))
def test_what_both_stores_share_imports_neither(module: str) -> None:
    imported = _imports(MODULES[module])
    assert not {name for name in imported
                if name.startswith(("storage.sqlite", "storage.postgres"))}


def test_neither_store_imports_the_other() -> None:
    for module, path in MODULES.items():
        for own, other in (("storage.sqlite", "storage.postgres"),
                           ("storage.postgres", "storage.sqlite")):
            if module.startswith(own):
                assert not {n for n in _imports(path) if n.startswith(other)}, module


def test_actors_import_nothing_above_storage() -> None:
    for module, path in MODULES.items():
        if module.startswith("actors"):
            assert {n.split(".")[0] for n in _imports(path)} <= {"actors", "storage"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("app.")))
def test_app_imports_point_down_or_sideways(module: str) -> None:
    upward = {name for name in _imports(MODULES[module])
              if name.startswith("app.") and _rank(name) > _rank(module)}
    assert not upward, f"{module} imports {sorted(upward)} from above it"


def test_the_ranks_name_real_modules() -> None:
    # A renamed module would silently drop out of the rule above.
    assert set(RANKS) <= set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_long(module: str) -> None:
    lines = MODULES[module].read_text().count("\n")
    assert lines <= LONGEST, f"{module} has {lines} lines"
