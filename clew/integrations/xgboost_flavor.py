"""XGBoost models, native ``Booster`` and scikit-learn wrappers, in XGBoost's own UBJSON format.

Nothing is unpickled: the file holds trees and parameters only, and the wrapper class is
chosen from a fixed list by name, so loading runs no code from the model directory. A native
``Booster`` loads as ``BoosterModel``, whose ``predict`` takes arrays and DataFrames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clew.errors import InvalidInputError
from clew.extras import require_extra
from clew.hookspecs import hookimpl
from clew.integrations import flavors
from clew.integrations.sklearn_flavor import fitted_inputs

MODEL_FILE = "model.ubj"
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")
BOOSTER = "Booster"


class BoosterModel:
    """A native Booster with ``predict`` on arrays and DataFrames (``inplace_predict``)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, inputs: Any) -> Any:
        return self.booster.inplace_predict(inputs)


class XGBoostFlavor:
    name = "xgboost"
    library = "xgboost"
    executes_code_on_load = False

    def can_save(self, model: Any) -> bool:
        if not type(model).__module__.startswith("xgboost"):
            return False
        return _class_name(model) in (*WRAPPERS, BOOSTER)

    def save(self, model: Any, directory: Path, example: Any = None) -> dict[str, Any]:
        model.save_model(directory / MODEL_FILE)
        kind = _class_name(model)
        details: dict[str, Any] = {"model_class": kind, "format": "ubjson"}
        details.update(_booster_inputs(model) if kind == BOOSTER else fitted_inputs(model))
        predictor = BoosterModel(model) if kind == BOOSTER else model
        details["signature"] = _signature(details, predictor, example, kind)
        return details

    def load(self, directory: Path, description: dict[str, Any]) -> Any:
        require_extra("xgboost", "loading an XGBoost model")
        import xgboost

        kind = description["model_class"]
        if kind == BOOSTER:
            return BoosterModel(xgboost.Booster(model_file=str(directory / MODEL_FILE)))
        if kind not in WRAPPERS:
            raise InvalidInputError(
                f"xgboost model class {kind!r} is not one clew loads; expected one of "
                f"{', '.join((*WRAPPERS, BOOSTER))}."
            )
        model = getattr(xgboost, kind)()
        model.load_model(directory / MODEL_FILE)
        return model


def _class_name(model: Any) -> str:
    return type(model).__name__


def _booster_inputs(booster: Any) -> dict[str, Any]:
    names = booster.feature_names
    found: dict[str, Any] = {"n_features": int(booster.num_features())}
    if names:
        found["feature_names"] = [str(name) for name in names]
    return found


def _signature(details: dict[str, Any], model: Any, example: Any, kind: str) -> dict[str, Any]:
    """From the example when given, else numbers in and the prediction's type out."""
    if example is not None:
        return flavors.signature(example, model.predict(example))
    names = details.get("feature_names") or [None] * int(details.get("n_features", 0))
    booster = model.booster if isinstance(model, BoosterModel) else model.get_booster()
    types = booster.feature_types or [None] * len(names)
    output = "int64" if kind.endswith("Classifier") else "float"
    return {
        "inputs": [
            {"name": name, "type": None if kind_ == "c" else "double"}
            for name, kind_ in zip(names, types, strict=False)
        ],
        "outputs": [{"name": None, "type": output}],
    }


@hookimpl
def clew_flavors() -> list[Any]:
    return [XGBoostFlavor()]
