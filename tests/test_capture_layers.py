"""Capture is split by where it runs, and the layers' imports point down (docs/architecture.md).

The queue, writer thread, input guard and copy arena run in the caller's process and live in
``clew/client``; sealing, acceptance, lookup and verification live in ``clew/service``, which
must never reach up into the client (nor the server or CLI); the records both sides share live
in ``clew/domain``, which imports nothing above itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

# Reads source files only: the embedded pass runs it, the backend and remote passes would repeat it.
pytestmark = pytest.mark.backend_independent

CLEW = Path(__file__).resolve().parent.parent / "clew"
ABOVE = {
    "domain": ("clew.store", "clew.service", "clew.client", "clew.server", "clew.cli"),
    "service": ("clew.client", "clew.server", "clew.cli"),
}
CLIENT_ONLY = ("capture_queue", "input_guard", "copy_arena")


def imported(path: Path, root: Path) -> set[str]:
    """Every module ``path`` (in the package at ``root``) imports, at the top or inside a
    function, relative imports resolved."""
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def upward_imports(layer: str, root: Path = CLEW) -> list[str]:
    """``file: module`` for each import in ``layer`` of a layer above it."""
    found = []
    for path in sorted((root / layer).rglob("*.py")):
        for name in sorted(imported(path, root)):
            if name.startswith(ABOVE[layer]):
                found.append(f"{path.relative_to(root.parent)}: {name}")
    return found


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    assert upward_imports(layer) == []


def test_the_capture_queue_guard_and_arena_live_in_the_client_only() -> None:
    for name in CLIENT_ONLY:
        assert (CLEW / "client" / f"{name}.py").is_file(), name
        assert not (CLEW / "service" / f"{name}.py").exists(), name


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check sees absolute, ``from`` and relative imports, so it can fail."""
    service = tmp_path / "clew" / "service"
    service.mkdir(parents=True)
    sealing = (CLEW / "service" / "capture_sealing.py").read_text()
    (service / "capture_sealing.py").write_text(
        sealing + "\nfrom clew.client import capture_queue\nfrom ..cli import main\n"
        "def later() -> None:\n    import clew.server.app\n"
    )
    assert upward_imports("service", tmp_path / "clew") == [
        "clew/service/capture_sealing.py: clew.cli",
        "clew/service/capture_sealing.py: clew.cli.main",
        "clew/service/capture_sealing.py: clew.client",
        "clew/service/capture_sealing.py: clew.client.capture_queue",
        "clew/service/capture_sealing.py: clew.server.app",
    ]
