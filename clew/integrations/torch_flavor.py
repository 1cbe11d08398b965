"""PyTorch models as ``torch.export`` programs (``.pt2``): a graph of ATen operators and raw
tensor bytes, with no Python code from the model's author.

A ``torch.nn.Module`` is exported with ``input_example`` (its batch dimension left dynamic);
an ``ExportedProgram`` or a ``.pt2`` file is stored as it is. ``torch.export.load`` can fall
back to unrestricted unpickling for objects beyond tensors, so before loading every pickled
payload in the archive is loaded with ``torch.load(weights_only=True)`` and custom or opaque
objects are refused: an archive that loads here unpickled only tensors. The model loads as
``TorchModel``, whose ``predict`` takes arrays and DataFrames and returns NumPy arrays.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from clew.errors import InvalidInputError
from clew.extras import require_extra
from clew.hookspecs import hookimpl
from clew.integrations import flavors

MODEL_FILE = "model.pt2"
_PICKLED_PARTS = ("data/sample_inputs/",)
_UNSAFE_CONSTANTS = ("custom_obj_", "opaque_obj_")


class TorchModel:
    """An exported program's module that predicts on arrays and DataFrames."""

    def __init__(self, module: Any, dtype: str) -> None:
        self.module = module
        self.dtype = np.dtype(dtype)

    def predict(self, inputs: Any) -> Any:
        import torch

        tensor = torch.from_numpy(_writable(inputs, self.dtype))
        with torch.inference_mode():
            output = self.module(tensor)
        if isinstance(output, tuple | list):
            output = output[0]
        # an array of its own (not a view of the tensor) is one capture can keep without a copy
        return np.array(output.detach().cpu())


class TorchFlavor:
    name = "torch"
    library = "torch"
    executes_code_on_load = False

    def can_save(self, model: Any) -> bool:
        if isinstance(model, str | Path):
            return Path(model).suffix.lower() == ".pt2" and Path(model).is_file()
        bases = _bases(model)
        return "torch.nn.modules.module.Module" in bases or "ExportedProgram" in bases

    def save(self, model: Any, directory: Path, example: Any = None) -> dict[str, Any]:
        require_extra("torch", "logging a PyTorch model")
        import torch

        target = directory / MODEL_FILE
        if isinstance(model, str | Path):
            program = _load(Path(model))
            shutil.copyfile(model, target)
        elif isinstance(model, torch.nn.Module):
            program = _export(model, example)
            torch.export.save(program, str(target))
        else:
            program = model
            torch.export.save(program, str(target))
        dtype = _input_dtype(program, example)
        loaded = TorchModel(program.module(), dtype)
        details: dict[str, Any] = {"format": "torch.export", "input_dtype": dtype}
        if example is not None:
            details["signature"] = flavors.signature(example, loaded.predict(example))
        else:
            details["signature"] = {"inputs": _program_inputs(program, dtype), "outputs": []}
        details.update(flavors.feature_count(details["signature"]["inputs"]))
        return details

    def load(self, directory: Path, description: dict[str, Any]) -> Any:
        require_extra("torch", "loading a PyTorch model")
        program = _load(directory / MODEL_FILE)
        return TorchModel(program.module(), description.get("input_dtype", "float32"))


def _bases(model: Any) -> str:
    return " ".join(f"{base.__module__}.{base.__name__}" for base in type(model).__mro__)


def _export(module: Any, example: Any) -> Any:
    """``torch.export`` of ``module`` on ``example``, any batch size allowed."""
    import torch

    if example is None:
        raise InvalidInputError(
            f"logging a {type(module).__name__} needs an input example to export it: "
            "run.log_model(model, name, input_example=<a batch of inputs>)."
        )
    batch = torch.from_numpy(_writable(example, None))
    if batch.dtype == torch.float64:
        batch = batch.float()
    if len(batch) < 2:  # a batch of one would fix the batch dimension at 1
        batch = torch.cat([batch, batch])
    dynamic = ({0: torch.export.Dim("batch")},)
    return torch.export.export(module.eval(), (batch,), dynamic_shapes=dynamic)


def _writable(inputs: Any, dtype: Any) -> np.ndarray:
    """An array torch can wrap without copying: a DataFrame's values, or a read-only array
    (torch warns on those), are copied; a writable array of the right dtype is not."""
    array = inputs.to_numpy(dtype=dtype) if hasattr(inputs, "columns") else inputs
    array = np.asarray(array, dtype=dtype)
    return array if array.flags.writeable else array.copy()


def _load(path: Path) -> Any:
    """``torch.export.load`` after checking the archive unpickles nothing but tensors."""
    import torch

    _check_archive(path)
    try:
        return torch.export.load(str(path))
    except Exception as error:
        raise InvalidInputError(f"{path.name} is not a torch.export program: {error}") from error


def _check_archive(path: Path) -> None:
    import torch

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InvalidInputError(
            f"{path.name} is not a torch.export .pt2 archive: {error}"
        ) from error
    with archive:
        for name in archive.namelist():
            if _pickled(archive, name):
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as error:
                    raise InvalidInputError(
                        f"{path.name} holds {name}, pickled objects beyond tensors; clew does "
                        "not load them (export the model again with torch.export)."
                    ) from error


def _pickled(archive: zipfile.ZipFile, name: str) -> bool:
    """Whether an archive member is a pickle (sample inputs, or tensors the config marks)."""
    parts = name.split("/", 1)
    inner = parts[1] if len(parts) == 2 else name
    if inner.startswith(_PICKLED_PARTS):
        return True
    folder, _, file = inner.rpartition("/")
    if file.startswith(_UNSAFE_CONSTANTS):
        raise InvalidInputError(
            f"{archive.filename} holds {name}, a custom object; clew loads only tensors."
        )
    return folder in ("data/weights", "data/constants") and file in _pickled_payloads(archive)


def _pickled_payloads(archive: zipfile.ZipFile) -> set[str]:
    found: set[str] = set()
    for name in archive.namelist():
        if name.endswith("_config.json"):
            config = json.loads(archive.read(name)).get("config", {})
            found.update(e["path_name"] for e in config.values() if e.get("use_pickle"))
    return found


def _input_dtype(program: Any, example: Any) -> str:
    if example is not None:
        dtype = np.asarray(example.to_numpy() if hasattr(example, "columns") else example).dtype
        return "float32" if dtype == np.float64 else str(dtype)
    value = _first_input(program)
    return str(value.dtype).removeprefix("torch.") if value is not None else "float32"


def _first_input(program: Any) -> Any:
    names = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names:
            return node.meta.get("val")
    return None


def _program_inputs(program: Any, dtype: str) -> list[dict[str, Any]]:
    """Unnamed columns of the first input's fixed width (its dimensions after the batch)."""
    value = _first_input(program)
    sizes = list(value.shape[1:]) if value is not None else []
    if not all(isinstance(size, int) for size in sizes):
        return []
    width = int(np.prod(sizes)) if sizes else 1
    return [{"name": None, "type": flavors.arrow_type(np.dtype(dtype))} for _ in range(width)]


@hookimpl
def clew_flavors() -> list[Any]:
    return [TorchFlavor()]
