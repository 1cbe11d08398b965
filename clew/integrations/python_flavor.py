"""Custom Python models: an object with ``predict`` whose class is defined in a ``.py`` file,
or a plain function of the inputs defined at the top of one.

The file defining the class (or function) is packaged with the model (``code/``), and the
distributions it imports are recorded with their versions (``requirements``). An object is
pickled; loading imports the packaged file, not whatever module of that name is installed,
and then unpickles, so loading runs the packaged code: clew loads it only after every file's
digest has been verified, and the server never loads models. A function is not pickled: it
loads as a ``FunctionModel`` whose ``predict`` calls it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import inspect
import pickle
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from clew.errors import InvalidInputError
from clew.hookspecs import hookimpl
from clew.integrations import flavors

CODE_DIR = "code"
MODEL_PICKLE = "model.pkl"


class FunctionModel:
    """A plain function of the inputs, called by ``predict``."""

    def __init__(self, function: Any) -> None:
        self.function = function

    def predict(self, inputs: Any) -> Any:
        return self.function(inputs)


class PythonFlavor:
    name = "python"
    library = None
    executes_code_on_load = True

    def can_save(self, model: Any) -> bool:
        if inspect.isfunction(model):
            return "<" not in model.__qualname__  # not a lambda or a nested function
        return (
            callable(getattr(model, "predict", None))
            and not isinstance(model, str | Path | type)
            and type(model).__module__ != "builtins"
        )

    def save(self, model: Any, directory: Path, example: Any = None) -> dict[str, Any]:
        function = inspect.isfunction(model)
        defined = model if function else type(model)
        source = _source_file(defined)
        (directory / CODE_DIR).mkdir()
        shutil.copyfile(source, directory / CODE_DIR / source.name)
        details: dict[str, Any] = {
            "function" if function else "model_class": defined.__qualname__,
            "module": defined.__module__,
            "code": f"{CODE_DIR}/{source.name}",
            "requirements": requirements(source),
        }
        if not function:
            with open(directory / MODEL_PICKLE, "wb") as handle:
                pickle.dump(model, handle, protocol=5)
            details["pickle_protocol"] = 5
        if example is not None:
            predictor = FunctionModel(model) if function else model
            details["signature"] = flavors.signature(example, predictor.predict(example))
            details.update(flavors.feature_count(details["signature"]["inputs"]))
        return details

    def load(self, directory: Path, description: dict[str, Any]) -> Any:
        packaged = _import_packaged(directory / description["code"])
        if "function" in description:
            return FunctionModel(getattr(packaged, description["function"]))
        with open(directory / MODEL_PICKLE, "rb") as handle:
            return _PackagedUnpickler(handle, description["module"], packaged).load()


def _source_file(defined: Any) -> Path:
    """The file defining a class or function, to package; refused when there is none."""
    module = sys.modules.get(defined.__module__)
    try:
        found = inspect.getsourcefile(module) if module is not None else None
    except TypeError:
        found = None
    if found is None:
        raise InvalidInputError(
            f"{defined.__qualname__} has no source file (defined interactively?); define it "
            "in a .py module so its code can be packaged with the model."
        )
    return Path(found)


def requirements(source: Path) -> list[str]:
    """``name==version`` of each installed distribution the file imports (the standard
    library and modules no distribution provides are left out)."""
    tree = ast.parse(source.read_text(), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    providers = importlib.metadata.packages_distributions()
    found = set()
    for name in names - set(sys.stdlib_module_names):
        for distribution in providers.get(name, []):
            found.add(f"{distribution}=={importlib.metadata.version(distribution)}")
    return sorted(found)


def _import_packaged(path: Path) -> ModuleType:
    """The packaged file imported under a name of its own (its content's digest), so it
    neither replaces nor is replaced by an installed module of the original name."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    name = f"clew_packaged_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"the packaged model code {path.name} cannot be imported.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class _PackagedUnpickler(pickle.Unpickler):
    """Finds the model's classes in the packaged code instead of the original module."""

    def __init__(self, handle: Any, original: str, packaged: ModuleType) -> None:
        super().__init__(handle)
        self._original = original
        self._packaged = packaged

    def find_class(self, module: str, name: str) -> Any:
        if module == self._original:
            return getattr(self._packaged, name)
        return super().find_class(module, name)


@hookimpl
def clew_flavors() -> list[Any]:
    return [PythonFlavor()]
