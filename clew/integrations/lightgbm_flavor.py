"""LightGBM models, native ``Booster`` and scikit-learn wrappers, in LightGBM's text format.

Nothing is unpickled: the file holds trees and parameters as text, and a classifier's classes
are kept in ``clew-model.json``. A model loads as ``LightGBMModel`` around its Booster (a
classifier as ``LightGBMClassifierModel``), which predicts as the logged model did.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from clew.extras import require_extra
from clew.hookspecs import hookimpl
from clew.integrations import flavors

MODEL_FILE = "model.txt"
WRAPPERS = ("LGBMClassifier", "LGBMRegressor", "LGBMRanker", "LGBMModel")
BOOSTER = "Booster"
_UNNAMED = re.compile(r"Column_\d+")


class LightGBMModel:
    """A LightGBM Booster; ``predict`` returns the Booster's prediction."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, inputs: Any) -> Any:
        return self.booster.predict(inputs)


class LightGBMClassifierModel(LightGBMModel):
    """A classifier: ``predict`` returns class labels, ``predict_proba`` a column per class."""

    def __init__(self, booster: Any, classes: list[Any]) -> None:
        super().__init__(booster)
        self.classes_ = np.asarray(classes)

    def predict(self, inputs: Any) -> Any:
        return self.classes_[np.argmax(self.predict_proba(inputs), axis=1)]

    def predict_proba(self, inputs: Any) -> Any:
        scores = self.booster.predict(inputs)
        return np.column_stack([1 - scores, scores]) if scores.ndim == 1 else scores


class LightGBMFlavor:
    name = "lightgbm"
    library = "lightgbm"
    executes_code_on_load = False

    def can_save(self, model: Any) -> bool:
        if not type(model).__module__.startswith("lightgbm"):
            return False
        return type(model).__name__ in (*WRAPPERS, BOOSTER)

    def save(self, model: Any, directory: Path, example: Any = None) -> dict[str, Any]:
        kind = type(model).__name__
        booster = model if kind == BOOSTER else model.booster_
        booster.save_model(str(directory / MODEL_FILE))
        details: dict[str, Any] = {"model_class": kind, "format": "text", **_inputs(booster)}
        classes = getattr(model, "classes_", None) if kind != BOOSTER else None
        if classes is not None:
            details["classes"] = np.asarray(classes).tolist()
        loaded = _model(booster, details.get("classes"))
        if example is not None:
            details["signature"] = flavors.signature(example, loaded.predict(example))
        else:
            details["signature"] = _fitted_signature(booster, details, classes)
        return details

    def load(self, directory: Path, description: dict[str, Any]) -> Any:
        require_extra("lightgbm", "loading a LightGBM model")
        import lightgbm

        booster = lightgbm.Booster(model_file=str(directory / MODEL_FILE))
        return _model(booster, description.get("classes"))


def _model(booster: Any, classes: list[Any] | None) -> LightGBMModel:
    return LightGBMModel(booster) if classes is None else LightGBMClassifierModel(booster, classes)


def _inputs(booster: Any) -> dict[str, Any]:
    """The Booster's feature count, and names unless LightGBM made them up (``Column_0``)."""
    names = [str(name) for name in booster.feature_name()]
    found: dict[str, Any] = {"n_features": len(names)}
    if not all(_UNNAMED.fullmatch(name) for name in names):
        found["feature_names"] = names
    return found


def _fitted_signature(booster: Any, details: dict[str, Any], classes: Any) -> dict[str, Any]:
    """Numbers in (any type when pandas categories were used) and the prediction's type out."""
    names = details.get("feature_names") or [None] * details["n_features"]
    numeric = None if booster.pandas_categorical else "double"
    output = flavors.arrow_type(np.asarray(classes).dtype) if classes is not None else "double"
    return {
        "inputs": [{"name": name, "type": numeric} for name in names],
        "outputs": [{"name": None, "type": output}],
    }


@hookimpl
def clew_flavors() -> list[Any]:
    return [LightGBMFlavor()]
