"""The CLI talks only to the SDK: no module under clew/cli/ imports a layer below it.

Allowed: the public ``clew`` package, ``clew.errors``, ``clew.client`` (with its admin facade
``clew.client.admin`` for operating a store and starting the server), ``clew.domain`` (the
plain values the SDK returns: records, refs, lineage and trace results; no I/O) and the CLI's
own modules. Refused: ``clew.service``, ``clew.store``, ``clew.server`` and
``clew.integrations``, and the storage and serving libraries they wrap, anywhere a command
would import them when it runs; that is what made some commands refuse a server address.
Imports under ``if TYPE_CHECKING:`` only name the types SDK calls return (they never run), so
they are allowed.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import clew
from clew.cli.main import COMMANDS

CLI = Path(clew.__file__).parent / "cli"
FORBIDDEN = (
    "clew.service",
    "clew.store",
    "clew.server",
    "clew.integrations",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import that runs, skipping ``if TYPE_CHECKING:`` bodies;
    ``from clew import service`` counts as ``clew.service`` (and ``clew``)."""
    found: list[tuple[int, str]] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            found.append((node.lineno, base))
            if not _forbidden(base):
                found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return found


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def violations(root: Path) -> list[str]:
    """``file:line imports module`` for every forbidden run-time import under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        package = ".".join(("clew", "cli", *relative.parent.parts))
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in _runtime_imports(tree, package):
            if _forbidden(module):
                found.append(f"clew/cli/{relative.as_posix()}:{line} imports {module}")
    return found


def test_the_cli_imports_only_the_sdk() -> None:
    found = violations(CLI)
    assert not found, (
        "the CLI calls the SDK (clew.client, clew.client.admin), never these: " + "; ".join(found)
    )


def test_the_rule_catches_each_way_of_importing_a_layer_below(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "direct.py").write_text("import clew.store.location\n")
    (tmp_path / "named.py").write_text("from clew import service\n")
    (tmp_path / "sub" / "relative.py").write_text("from ...server import hosts\n")
    (tmp_path / "nested.py").write_text("def f():\n    from sqlalchemy import select\n")
    (tmp_path / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from clew.service import audit\n"
    )
    (tmp_path / "fine.py").write_text("import clew\nfrom clew.client import admin\n")
    assert violations(tmp_path) == [
        "clew/cli/direct.py:1 imports clew.store.location",
        "clew/cli/named.py:1 imports clew.service",
        "clew/cli/nested.py:2 imports sqlalchemy",
        "clew/cli/sub/relative.py:1 imports clew.server",
    ]


def test_commands_are_loaded_only_from_the_cli_package() -> None:
    """``LazyGroup`` imports modules by name, which the ast scan can not see."""
    outside = {
        name: c.module for name, c in COMMANDS.items() if not c.module.startswith("clew.cli.")
    }
    assert outside == {}


_LOADED = """
import json, sys
from clew.cli.main import app
try:
    app({args!r})
except SystemExit:
    pass
print(json.dumps(sorted(name for name in sys.modules if name.startswith("clew."))))
"""


def _clew_modules_after(args: list[str], home: Path) -> set[str]:
    """The clew modules a fresh interpreter has imported after ``clew ARGS``."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED.format(args=args)],
        capture_output=True,
        text=True,
        check=True,
        env={**_without_store_settings(), "CLEW_HOME": str(home)},
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _without_store_settings() -> dict[str, str]:
    """This process's environment without the test pass's store (a fresh embedded store)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CLEW_")}


def test_help_and_a_simple_command_do_not_load_the_server(tmp_path: Path) -> None:
    ran = {"clew.cli.runs", "clew.client.client", "clew.store.metadata"}  # it read the store
    for args, expected in ((["--help"], set()), (["runs", "list"], ran)):
        loaded = _clew_modules_after(args, tmp_path / "home")
        server = sorted(name for name in loaded if name.startswith("clew.server"))
        assert not server, f"clew {' '.join(args)} loaded {server}"
        assert expected <= loaded, f"clew {' '.join(args)} did not get as far as {expected}"
