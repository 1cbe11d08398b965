"""Model flavors: how a model object becomes a directory of files and back.

A saved model is a directory with the flavor's files plus ``clew-model.json`` describing the
flavor, the library and its version and the Python version, so it can be loaded later by
the right code. Flavors are found through the ``clew`` entry-point group (see hookspecs.py).

A flavor's ``save`` returns what it learnt about the model: ``feature_names`` and
``n_features`` (the registry builds the version's input signature from them) and a
``signature`` of typed ``inputs`` and ``outputs`` where the fitted model or an example tells.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any, Protocol

import pluggy

from clew import hookspecs
from clew.errors import InvalidInputError

MODEL_FILE = "clew-model.json"

# Flavors that accept broad families of objects; a more specific installed flavor (xgboost's
# sklearn wrapper is also a scikit-learn estimator) is tried first, then these in this order.
FALLBACKS = ("sklearn", "python", "files")


class Flavor(Protocol):
    name: str
    library: str | None
    executes_code_on_load: bool

    def can_save(self, model: Any) -> bool: ...

    def save(self, model: Any, directory: Path, example: Any = None) -> dict[str, Any]: ...

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
    """The flavor named, else the most specific installed flavor that can save ``model``."""
    if name:
        return get(name)
    flavors = available()
    specific = [f for f in flavors.values() if f.name not in FALLBACKS]
    general = [flavors[n] for n in FALLBACKS if n in flavors]
    for flavor in specific + general:
        if flavor.can_save(model):
            return flavor
    raise InvalidInputError(
        f"no installed flavor can save a {type(model).__name__}; pass flavor= or a file path "
        "(installed flavors: " + ", ".join(flavors) + ")."
    )


def save(model: Any, directory: Path, flavor: Flavor, example: Any = None) -> dict[str, Any]:
    """Write the model and its description into ``directory``; returns the description."""
    if example is None:  # flavors from plugins may not take an example
        details = flavor.save(model, directory)
    else:
        details = flavor.save(model, directory, example)
    description = {
        "format": "clew.model/v1",
        "flavor": flavor.name,
        "library": flavor.library,
        "library_version": _version(flavor.library),
        "python": platform.python_version(),
        "executes_code_on_load": flavor.executes_code_on_load,
        **details,
    }
    recorded = example_rows(example)
    if recorded is not None:
        description["input_example"] = recorded
    (directory / MODEL_FILE).write_text(json.dumps(description, indent=2, sort_keys=True))
    return description


EXAMPLE_ROWS = 5
EXAMPLE_BYTES = 16 * 1024


def example_rows(example: Any) -> dict[str, Any] | None:
    """The first rows of an input example as JSON (``clew serve`` probes the model with them,
    see ``load_example``); None when there is none, it does not convert, or it is large."""
    if example is None:
        return None
    try:
        if hasattr(example, "dtypes") and hasattr(example, "columns"):
            head = example.head(EXAMPLE_ROWS)
            recorded: dict[str, Any] = {
                "columns": [str(name) for name in head.columns],
                "dtypes": [str(dtype) for dtype in head.dtypes],
                "rows": head.astype(object).to_numpy().tolist(),
            }
        else:
            import numpy as np

            array = np.asarray(example)[:EXAMPLE_ROWS]
            if array.dtype.kind not in "biuf":
                return None
            recorded = {"dtype": str(array.dtype), "rows": array.tolist()}
        text = json.dumps(recorded, allow_nan=False, default=_plain)
        recorded = json.loads(text)
    except (TypeError, ValueError):
        return None
    return recorded if len(text) <= EXAMPLE_BYTES else None


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds; anything else does not convert."""
    import numpy as np

    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    raise TypeError(f"{type(value).__name__} is not a number")


def load_example(recorded: Any) -> Any:
    """The input example ``example_rows`` recorded, as the DataFrame or array it was."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("rows"), list):
        return None
    if "columns" in recorded:
        import pandas as pd

        frame = pd.DataFrame(recorded["rows"], columns=recorded["columns"])
        for name, dtype in zip(recorded["columns"], recorded.get("dtypes") or [], strict=False):
            with contextlib.suppress(TypeError, ValueError):
                frame[name] = frame[name].astype(dtype)
        return frame
    import numpy as np

    return np.asarray(recorded["rows"], dtype=recorded.get("dtype"))


def load(directory: Path) -> Any:
    description = describe(directory)
    return get(description["flavor"]).load(directory, description)


def describe(directory: Path) -> dict[str, Any]:
    """The ``clew-model.json`` of a saved model directory."""
    description: dict[str, Any] = json.loads((directory / MODEL_FILE).read_text())
    return description


def columns(table: Any) -> list[dict[str, Any]]:
    """Named, typed columns of a DataFrame, or unnamed typed ones of a 2-D array (one column
    for a 1-D array); the types are Arrow's names (``double``, ``int64``, ``string``)."""
    import numpy as np

    if hasattr(table, "dtypes") and hasattr(table, "columns"):
        return [{"name": str(name), "type": _column_type(table[name])} for name in table.columns]
    array = np.asarray(table)
    width = 1 if array.ndim <= 1 else int(np.prod(array.shape[1:]))
    return [{"name": None, "type": arrow_type(array.dtype)} for _ in range(width)]


_INFERRED = {"string": "string", "integer": "int64", "floating": "double", "boolean": "bool"}


def _column_type(column: Any) -> str | None:
    """A pandas column's Arrow type; an object column's from the values it holds."""
    if column.dtype == object:
        import pandas as pd

        return _INFERRED.get(pd.api.types.infer_dtype(column, skipna=True))
    return arrow_type(column.dtype)


def arrow_type(dtype: Any) -> str | None:
    """Arrow's name for a NumPy or pandas dtype (None for objects and the unconvertible)."""
    import pyarrow as pa

    try:
        return str(pa.from_numpy_dtype(dtype))
    except (TypeError, pa.ArrowNotImplementedError):
        return "string" if str(dtype) in ("string", "str") else None


def signature(inputs: Any, outputs: Any) -> dict[str, Any]:
    """The typed signature of an example input and what the model returned for it."""
    return {"inputs": columns(inputs), "outputs": columns(outputs)}


def feature_count(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """``feature_names`` (when every input is named) and ``n_features`` of typed inputs."""
    names = [column["name"] for column in inputs]
    found: dict[str, Any] = {"n_features": len(inputs)}
    if names and all(isinstance(name, str) for name in names):
        found["feature_names"] = names
    return found


def _version(library: str | None) -> str | None:
    """The installed version of ``library``: its distribution's, else its module's
    ``__version__`` (``xgboost`` is installed as ``xgboost`` or ``xgboost-cpu``)."""
    if not library:
        return None
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        version = getattr(importlib.import_module(library), "__version__", None)
    except ImportError:
        return None
    return str(version) if version is not None else None
