"""Services are built in one place: ``clew.service.container.ServiceContainer``.

The embedded client, the server's routes and the web UI take their services from a container
instead of constructing them, so how a service is wired to its store is decided once.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import clew.service
from clew.service.container import ServiceContainer
from clew.store.location import Store

CLEW = Path(clew.service.__file__).parent.parent


def store_backed_services() -> set[type]:
    """Every ``*Service`` class of the service layer built from a store alone."""
    found: set[type] = set()
    for module_info in pkgutil.iter_modules(clew.service.__path__, "clew.service."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if not (inspect.isclass(value) and name.endswith("Service")):
                continue
            if value.__module__ == module.__name__ and _takes_only_a_store(value):
                found.add(value)
    return found


def _takes_only_a_store(cls: type) -> bool:
    return list(inspect.signature(cls).parameters) == ["store"]


def constructions(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, class name) of every call in ``source`` to one of the classes ``names``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        called = node.func
        name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", None)
        if name in names:
            found.append((node.lineno, name))
    return found


def test_the_container_builds_every_store_backed_service(store: Store) -> None:
    container = ServiceContainer(store)
    # every public attribute, so the services the container builds on first use are built
    built = {type(getattr(container, name)) for name in dir(container) if not name.startswith("_")}
    services = store_backed_services()
    assert len(services) >= 9
    assert services <= built, f"not built by ServiceContainer: {services - built}"


def test_no_module_above_the_service_layer_constructs_a_service() -> None:
    names = {cls.__name__ for cls in store_backed_services()}
    assert constructions("def f(s):\n    return x.RunService(s)\n", names) == [(2, "RunService")]
    offenders = [
        f"{path.relative_to(CLEW.parent)}:{line}: {name}(...)"
        for path in sorted(CLEW.rglob("*.py"))
        if CLEW / "service" not in path.parents
        for line, name in constructions(path.read_text(), names)
    ]
    assert offenders == [], "take services from a ServiceContainer instead: " + str(offenders)
