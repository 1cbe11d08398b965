"""scikit-learn models and pipelines, saved with pickle.

Loading unpickles, which can execute code: clew only loads after every file's digest has been
verified against the registered artifact, and the server never loads models at all.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from clew.extras import require_extra
from clew.hookspecs import hookimpl
from clew.integrations import flavors

MODEL_PICKLE = "model.pkl"


class SklearnFlavor:
    name = "sklearn"
    library = "scikit-learn"
    executes_code_on_load = True

    def can_save(self, model: Any) -> bool:
        try:
            from sklearn.base import BaseEstimator
        except ImportError:
            return False
        return isinstance(model, BaseEstimator)

    def save(self, model: Any, directory: Path, example: Any = None) -> dict[str, Any]:
        with open(directory / MODEL_PICKLE, "wb") as handle:
            pickle.dump(model, handle, protocol=5)
        details = {
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "pickle_protocol": 5,
            **fitted_inputs(model),
        }
        if example is not None:
            details["signature"] = flavors.signature(example, model.predict(example))
        return details

    def load(self, directory: Path, description: dict[str, Any]) -> Any:
        require_extra("sklearn", "loading a scikit-learn model")
        with open(directory / MODEL_PICKLE, "rb") as handle:
            return pickle.load(handle)


def fitted_inputs(model: Any) -> dict[str, Any]:
    """What the fitted model saw: its feature names (fitted on a DataFrame) and their count.

    The registry builds a version's input signature from these, not from the training data's
    columns, which may hold an index or columns the model never used.
    """
    found: dict[str, Any] = {}
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        found["feature_names"] = [str(name) for name in names]
    count = getattr(model, "n_features_in_", None)
    if isinstance(count, int):
        found["n_features"] = count
    return found


@hookimpl
def clew_flavors() -> list[Any]:
    return [SklearnFlavor()]
