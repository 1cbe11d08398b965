"""ONNX models (an ``onnx.ModelProto`` or an ``.onnx`` file), run with onnxruntime.

An ONNX file is a protobuf graph of standard operators: loading it runs no Python code. The
model loads as ``OnnxModel``: ``predict`` feeds an array (or a DataFrame, column by column to
a graph with one input per column) and returns the graph's first output; a graph whose second
output is a tensor (a converted classifier's probabilities) has ``predict_proba`` as well.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from clew.errors import InvalidInputError
from clew.extras import require_extra
from clew.hookspecs import hookimpl
from clew.integrations import flavors

MODEL_FILE = "model.onnx"


class OnnxModel:
    """An onnxruntime session that predicts on arrays and DataFrames."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self._inputs = [(i.name, _numpy_type(i.type)) for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]

    def predict(self, inputs: Any) -> Any:
        return self.session.run(self._outputs[:1], self._feed(inputs))[0]

    def _feed(self, inputs: Any) -> dict[str, np.ndarray]:
        """One array for a one-input graph; a DataFrame's columns by name for a graph with
        one input per column."""
        if len(self._inputs) == 1:
            name, dtype = self._inputs[0]
            return {name: np.asarray(inputs, dtype=dtype)}
        if not hasattr(inputs, "columns"):
            names = ", ".join(name for name, _ in self._inputs)
            raise InvalidInputError(
                f"this ONNX model takes {len(self._inputs)} named inputs ({names}); pass a "
                "DataFrame with those columns."
            )
        return {
            name: inputs[name].to_numpy(dtype=dtype).reshape(-1, 1) for name, dtype in self._inputs
        }


class OnnxClassifierModel(OnnxModel):
    """A graph whose second output is a tensor of class probabilities."""

    def predict_proba(self, inputs: Any) -> Any:
        return self.session.run(self._outputs[1:2], self._feed(inputs))[0]


class OnnxFlavor:
    name = "onnx"
    library = "onnx"
    executes_code_on_load = False

    def can_save(self, model: Any) -> bool:
        if isinstance(model, str | Path):
            return Path(model).suffix.lower() == ".onnx" and Path(model).is_file()
        return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")

    def save(self, model: Any, directory: Path, example: Any = None) -> dict[str, Any]:
        require_extra("onnx", "logging an ONNX model")
        import onnx

        target = directory / MODEL_FILE
        if isinstance(model, str | Path):
            shutil.copyfile(model, target)
        else:
            onnx.save(model, str(target))
        try:
            graph = onnx.load(str(target))
            onnx.checker.check_model(graph)
        except Exception as error:
            raise InvalidInputError(f"{model} is not a valid ONNX model: {error}") from error
        details: dict[str, Any] = {"format": "onnx", "opset": _opsets(graph), **_runtime()}
        loaded = _model(graph, target)
        if example is not None:
            signature = flavors.signature(example, loaded.predict(example))
        else:
            signature = _graph_signature(graph)
        details["signature"] = signature
        details.update(flavors.feature_count(signature["inputs"]))
        return details

    def load(self, directory: Path, description: dict[str, Any]) -> Any:
        require_extra("onnx", "loading an ONNX model")
        import onnx

        return _model(onnx.load(str(directory / MODEL_FILE)), directory / MODEL_FILE)


def _model(graph: Any, path: Path) -> OnnxModel:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.get_outputs()
    tensor_proba = len(outputs) > 1 and outputs[1].type.startswith("tensor(")
    return OnnxClassifierModel(session) if tensor_proba else OnnxModel(session)


def _opsets(graph: Any) -> dict[str, int]:
    return {entry.domain or "ai.onnx": int(entry.version) for entry in graph.opset_import}


def _graph_signature(graph: Any) -> dict[str, Any]:
    """Inputs from the graph: one input of shape (rows, n) is n unnamed columns; several
    inputs of shape (rows, 1) are columns named after them. Outputs: the first output."""
    declared = [i for i in graph.graph.input if i.name not in _initializers(graph)]
    if len(declared) == 1:
        width = _width(declared[0])
        inputs = [{"name": None, "type": _arrow_type(declared[0])}] * width
    else:
        inputs = [{"name": i.name, "type": _arrow_type(i)} for i in declared]
    first = graph.graph.output[0]
    outputs = [{"name": first.name, "type": _arrow_type(first)}]
    return {"inputs": [dict(column) for column in inputs], "outputs": outputs}


def _initializers(graph: Any) -> set[str]:
    return {initializer.name for initializer in graph.graph.initializer}


def _width(value: Any) -> int:
    """Columns of a (rows, n) tensor input; 1 when its width is not fixed."""
    dims = value.type.tensor_type.shape.dim
    sizes = [d.dim_value for d in dims[1:]]
    return int(np.prod(sizes)) if sizes and all(size > 0 for size in sizes) else 1


def _arrow_type(value: Any) -> str | None:
    import onnx

    element = value.type.tensor_type.elem_type
    if not element:
        return None
    return flavors.arrow_type(onnx.helper.tensor_dtype_to_np_dtype(element))


def _numpy_type(onnx_type: str) -> Any:
    """The NumPy dtype of an onnxruntime type name such as ``tensor(float)``."""
    name = onnx_type.removeprefix("tensor(").removesuffix(")")
    return {"float": np.float32, "double": np.float64, "string": object, "bool": np.bool_}.get(
        name, np.dtype(name) if name.startswith(("int", "uint")) else np.float32
    )


@hookimpl
def clew_flavors() -> list[Any]:
    return [OnnxFlavor()]


def _runtime() -> dict[str, Any]:
    """The onnxruntime version that checked the model (``library_version`` is onnx's)."""
    import onnxruntime

    return {"onnxruntime_version": onnxruntime.__version__}
