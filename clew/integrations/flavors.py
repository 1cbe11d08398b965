"""Model flavors: how a model object becomes a directory of files and back.

A saved model is a directory with the flavor's files plus ``clew-model.json`` describing the
flavor, the library and its version and the Python version, so it can be loaded later by
the right code. Flavors are found through the ``clew`` entry-point group (see hookspecs.py).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any, Protocol

import pluggy

from clew import hookspecs
from clew.errors import InvalidInputError

MODEL_FILE = "clew-model.json"


class Flavor(Protocol):
    name: str
    library: str | None
    executes_code_on_load: bool

    def can_save(self, model: Any) -> bool: ...

    def save(self, model: Any, directory: Path) -> dict[str, Any]: ...

    def load(self, directory: Path, description: dict[str, Any]) -> Any: ...


@functools.cache
def _plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("clew")
    manager.add_hookspecs(hookspecs)
    manager.load_setuptools_entrypoints("clew")
    return manager


def available() -> dict[str, Flavor]:
    flavors: dict[str, Flavor] = {}
    for provided in _plugin_manager().hook.clew_flavors():
        for flavor in provided:
            flavors.setdefault(flavor.name, flavor)
    return flavors


def get(name: str) -> Flavor:
    flavors = available()
    if name not in flavors:
        raise InvalidInputError(
            f"model flavor {name!r} is not installed; installed flavors: {', '.join(flavors)}."
        )
    return flavors[name]


def choose(model: Any, name: str | None) -> Flavor:
    if name:
        return get(name)
    for flavor in available().values():
        if flavor.name != "files" and flavor.can_save(model):
            return flavor
    files = get("files")
    if files.can_save(model):
        return files
    raise InvalidInputError(
        f"no installed flavor can save a {type(model).__name__}; pass flavor= or a file path."
    )


def save(model: Any, directory: Path, flavor: Flavor) -> dict[str, Any]:
    """Write the model and its description into ``directory``; returns the description."""
    details = flavor.save(model, directory)
    description = {
        "format": "clew.model/v1",
        "flavor": flavor.name,
        "library": flavor.library,
        "library_version": _version(flavor.library),
        "python": platform.python_version(),
        "executes_code_on_load": flavor.executes_code_on_load,
        **details,
    }
    (directory / MODEL_FILE).write_text(json.dumps(description, indent=2, sort_keys=True))
    return description


def load(directory: Path) -> Any:
    description = json.loads((directory / MODEL_FILE).read_text())
    return get(description["flavor"]).load(directory, description)


def _version(library: str | None) -> str | None:
    if not library:
        return None
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None
