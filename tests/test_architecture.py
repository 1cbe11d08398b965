"""The layers in docs/architecture.md hold: imports point down, and every module is on the page."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clew"
PAGE = ROOT / "docs" / "architecture.md"

# What each part of clew may import at run time (imports under TYPE_CHECKING are free).
ALLOWED = {
    "domain": {"errors"},
    "errors": set(),
    "extras": {"errors"},
    "hookspecs": set(),
    "store": {"domain", "errors", "extras"},
    "migrations": {"domain", "errors", "store", "service"},  # backfills replay service rules
    "service": {"domain", "errors", "extras", "store"},
    "integrations": {"domain", "errors", "hookspecs", "extras"},
    "client": {"domain", "errors", "extras", "hookspecs", "integrations", "service", "store"},
    "server": {"domain", "errors", "extras", "service", "store", "__version__"},
    "cli": {"client", "domain", "errors", "extras", "__init__"},
    "__init__": {"client", "domain", "errors"},
}
# The one module allowed to reach up: the admin facade starts `clew server` and `clew ui`.
EXCEPTIONS = {("clew/client/admin.py", "server")}


def _part(package: Path, path: Path) -> str:
    relative = path.relative_to(package).parts
    if relative[:2] == ("store", "migrations"):
        return "migrations"
    return relative[0] if len(relative) > 1 else path.stem


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_parts(source: str) -> list[tuple[int, str]]:
    """(line, part of clew) for each run-time import of clew in ``source``."""
    tree = ast.parse(source)
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "clew":
                modules = [f"clew.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        else:
            continue
        for module in modules:
            if module == "clew":
                found.append((node.lineno, "__init__"))
            elif module.startswith("clew."):
                found.append((node.lineno, module.split(".")[1]))
    return found


def violations(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        if "demo_project" in path.parts:
            continue  # example scripts a user copies; they import clew like any user
        part = _part(package, path)
        name = path.relative_to(package.parent).as_posix()
        for line, target in imported_parts(path.read_text()):
            if target == part or target in ALLOWED[part] or (name, target) in EXCEPTIONS:
                continue
            found.append(f"{name}:{line} ({part}) imports clew.{target}")
    return found


def test_imports_point_down_the_layers() -> None:
    assert violations(PACKAGE) == []


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "clew"
    (package / "domain").mkdir(parents=True)
    (package / "store").mkdir()
    (package / "domain" / "bad.py").write_text("from clew.store import schema\n")
    (package / "store" / "fine.py").write_text(
        "from typing import TYPE_CHECKING\nfrom clew.domain import ids\n"
        "if TYPE_CHECKING:\n    from clew.service import audit\n"
    )
    (package / "store" / "worse.py").write_text("def f():\n    import clew.server.app\n")
    assert violations(package) == [
        "clew/domain/bad.py:1 (domain) imports clew.store",
        "clew/store/worse.py:2 (store) imports clew.server",
    ]


def test_every_module_has_its_line_in_docs_architecture() -> None:
    page = PAGE.read_text()
    missing = [
        path.relative_to(ROOT).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if "versions" not in path.parts
        and "demo_project" not in path.parts
        and f"`{path.relative_to(ROOT).as_posix()}`" not in page
    ]
    assert missing == [], "add a one-line job for each to docs/architecture.md"


def test_docs_architecture_names_no_module_that_is_gone() -> None:
    named = {
        line.split("`")[1] for line in PAGE.read_text().splitlines() if line.startswith("| `clew/")
    }
    assert sorted(name for name in named if not (ROOT / name).exists()) == []
