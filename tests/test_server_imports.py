"""The server's core does not reach into its web UI: the UI is built on the core.

Only ``clew.server.app`` (which mounts the UI on the API) may import ``clew.server.ui``; auth,
permissions (both route tables live in ``clew.server.permissions``), sessions and the routes
must work without it, so a change to a page can not change who may call the API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import clew.server

SERVER = Path(clew.server.__file__).parent
UI_PACKAGE = "clew.server.ui"
MOUNTS_THE_UI = {SERVER / "app.py"}


def imported_modules(source: str) -> set[str]:
    """Every module ``source`` imports, names imported from a package included as submodules."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_ui(module: str) -> bool:
    return module == UI_PACKAGE or module.startswith(UI_PACKAGE + ".")


def test_the_server_core_does_not_import_the_web_ui() -> None:
    assert any(map(_is_ui, imported_modules("from clew.server import ui\n")))
    core = [
        path
        for path in sorted(SERVER.rglob("*.py"))
        if SERVER / "ui" not in path.parents and path not in MOUNTS_THE_UI
    ]
    assert len(core) > 10
    offenders = {
        str(path.relative_to(SERVER)): sorted(filter(_is_ui, imported_modules(path.read_text())))
        for path in core
    }
    assert {path: ui for path, ui in offenders.items() if ui} == {}
