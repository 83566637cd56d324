"""The package as installed: its dependencies, and a wheel that installs and serves."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import httpx
import pytest

from app.config.schema import demo_config
from app.config.summary import summary
from app.events.senders import exposure_warnings
from tests.demo_visit import demo_visit
from tests.served import Served

# Longer than the suite's per-test bound: building and installing the wheel into a fresh venv.
pytestmark = pytest.mark.timeout(600)

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


# The wheel, built from a copy of what a clone holds and installed into a fresh venv.

@dataclass(frozen=True)
class Installed:
    wheel: Path
    build_output: str
    python: Path
    command: Path


def _clean_env() -> dict[str, str]:
    """This environment minus anything that could import the source tree."""
    return {name: value for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    # A copy, so the build sees what a fresh clone has (no stale build/ directory) and
    # writes nothing into the working tree.
    source = base / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in RUNTIME_PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "-w", str(base / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300, cwd=base)
    build_output = build.stdout + build.stderr
    assert build.returncode == 0, build_output
    [wheel] = (base / "dist").glob("event_postback-*.whl")

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    # The dependencies come from this suite's own environment rather than PyPI, so the
    # test is quick and works offline. A plain path line makes them importable without
    # processing that environment's .pth files, among them the editable install's.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (Path(site.stdout.strip()) / "_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return Installed(wheel=wheel, build_output=build_output, python=python,
                     command=venv / "bin" / "event-postback")


def _tree_files() -> set[str]:
    return {path.relative_to(ROOT).as_posix()
            for package in RUNTIME_PACKAGES for path in (ROOT / package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


def test_the_wheel_builds_without_a_warning(installed: Installed) -> None:
    warnings = [line for line in installed.build_output.splitlines() if "warn" in line.lower()]
    assert warnings == [], installed.build_output


def test_the_wheel_holds_every_module_and_data_file_of_the_tree(installed: Installed) -> None:
    tree = _tree_files()
    # The walk itself must see the subpackages and data files the service needs.
    assert {"app/postbacks/__init__.py", "app/routes/__init__.py", "app/demo.toml",
            "app/static/sdk.js"} <= tree
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = {name for name in wheel.namelist()
                   if not name.startswith("event_postback-")}
    assert (sorted(tree - shipped), sorted(shipped - tree)) == ([], [])


def _run(installed: Installed, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(installed.command), *args], capture_output=True, text=True,
                          cwd=cwd, env=_clean_env(), timeout=60)


def test_the_installed_command_runs_from_the_venv_not_the_source_tree(
    installed: Installed, tmp_path: Path
) -> None:
    where = subprocess.run([str(installed.python), "-c", "import app; print(app.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=_clean_env(),
                           check=True)
    app_file = Path(where.stdout.strip())
    assert app_file.is_relative_to(installed.python.parent.parent), app_file

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = _run(installed, "--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"event-postback {project['version']}\n")

    demo = app_file.parent / "demo.toml"
    checked = _run(installed, "check-config", str(demo), cwd=tmp_path)
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        0, f"{demo}: ok ({summary(demo_config())})\n"
        + "".join(f"{line}\n" for line in exposure_warnings(demo_config())), "")


def test_the_installed_server_answers_the_demo(installed: Installed, tmp_path: Path) -> None:
    server = Served(tmp_path, executable=installed.command, env=_clean_env())
    try:
        demo_visit(server.url)
        sdk = httpx.get(f"{server.url}/sdk.js", timeout=10)
        assert (sdk.status_code, sdk.content) == (200, (ROOT / "app/static/sdk.js").read_bytes())
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.log_path.read_text()
    finally:
        server.kill()
    # The database lands in the working directory, as the default path says.
    assert (tmp_path / "event-postback.db").is_file()
