"""Explanations and bias reports of registered versions, and why one captured prediction was made.

The work runs in this process because it needs the model itself, and clew loads (unpickles)
models only in the client, after their digests are checked (``Client.load_model``). A report
is recorded as evidence through the ordinary run API: one ``evaluation`` run that consumed the
version's model artifact and the evaluation data, and produced the report as JSON and as a
self-contained HTML page (``type="report"``), so lineage links it to both and the policy's
evidence check (clew/service/explanations.py) finds it on either backend.

Global explanations: SHAP's TreeExplainer for tree ensembles, LinearExplainer for linear models,
a sampled KernelExplainer otherwise, plus permutation importance (any model) when the data has
the target. Local explanations (``explain_prediction``) read the captured inputs of one
prediction id and explain that row with the exact version that made it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.domain import bias
from clew.domain.records import ArtifactRecord, VersionRecord
from clew.errors import InvalidInputError
from clew.service import explanations as reports

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from clew.client.client import Client
    from clew.client.loaded_model import LoadedModel
    from clew.service.protocols import Backend

__all__ = ["bias_report", "explain", "explain_prediction", "version_reports"]

VersionRef = str | VersionRecord
Data = Any  # a pandas DataFrame, or a dataset artifact (record or ref) logged earlier
# Rows SHAP explains for a global summary (a seeded sample of larger data; the report says so):
# exact TreeSHAP costs rows x trees x leaves x depth^2, about 2.5 ms a row for 100 trees of depth
# 8, so 300 rows keep a global summary under 1 CPU s; their mean |SHAP| ranking matched exact
# TreeSHAP on all 10k rows (rho 1.000, benchmarks/bench_explain.py --choices). ``max_rows``
# asks for more.
GLOBAL_ROWS = 300
KERNEL_ROWS = 50  # KernelExplainer costs background x rows model calls: kept small
BACKGROUND_ROWS = 50
PERMUTATION_ROWS = 2_000
PERMUTATION_REPEATS = 5
EVIDENCE_EXPERIMENT = "evidence"


class ExplainMixin:
    """Explanations and bias reports through the SDK, on either backend."""

    if TYPE_CHECKING:
        _service: Backend

        @property
        def actor(self) -> str: ...

        def load_model(self, ref: VersionRef) -> LoadedModel: ...

        def get_version(self, ref: VersionRef) -> VersionRecord: ...

    def explain(
        self,
        ref: VersionRef,
        data: Data,
        *,
        target: str | None = None,
        method: str = "auto",
        max_rows: int = GLOBAL_ROWS,
        record: bool = True,
        dataset_name: str | None = None,
    ) -> dict[str, Any]:
        """A global explanation of version ``ref`` on ``data``: mean |SHAP| per feature and,
        when ``target`` names the label column, permutation importance; recorded as evidence."""
        loaded = self.load_model(ref)
        frame, dataset = self._data(data)
        features = _features(loaded, frame, exclude=[target] if target else [])
        document = reports.explanation_document(
            _global_explanation(loaded.raw, frame, features, target, method, max_rows),
            loaded.version,
            _dataset_fact(dataset, frame, dataset_name),
        )
        return self._recorded(document, loaded.version, frame, dataset, dataset_name, record)

    def bias_report(
        self,
        ref: VersionRef,
        data: Data,
        *,
        target: str,
        attributes: Sequence[str],
        positive_label: Any = 1,
        predict: bool = True,
        min_group_rows: int = bias.MIN_GROUP_ROWS,
        record: bool = True,
        dataset_name: str | None = None,
    ) -> dict[str, Any]:
        """Pre-training bias metrics of ``target`` and, with ``predict``, post-training metrics
        of the version's predictions on ``data``, per sensitive attribute; recorded as evidence."""
        import numpy as np

        if isinstance(attributes, str):
            attributes = [attributes]
        loaded = self.load_model(ref)
        frame, dataset = self._data(data)
        _require_columns(frame, [target], "target column")
        _require_columns(frame, list(attributes), "sensitive attribute")
        predictions = None
        if predict:
            features = _features(loaded, frame, exclude=[target])
            predictions = np.asarray(loaded.raw.predict(frame[features]))
        metrics = bias.compute(
            frame[target].to_numpy(),
            {name: frame[name] for name in attributes},
            predictions,
            positive_label=positive_label,
            min_group_rows=min_group_rows,
        )
        document = reports.bias_document(
            metrics.to_dict(), loaded.version, _dataset_fact(dataset, frame, dataset_name), target
        )
        return self._recorded(document, loaded.version, frame, dataset, dataset_name, record)

    def explain_prediction(
        self, prediction_id: str, *, background: Data | None = None
    ) -> dict[str, Any]:
        """Why one captured prediction came out as it did: each input's SHAP contribution,
        computed with the exact version (digest-checked) on the inputs captured with it."""
        captured = self._service.predictions.get_prediction(prediction_id)
        if captured.inputs_withheld or captured.inputs is None:
            why = (
                "the caller changed the input array before capture, so they were withheld"
                if captured.inputs_withheld
                else "input sampling did not keep this row's inputs"
            )
            raise InvalidInputError(
                f"prediction {captured.id} cannot be explained: its inputs were not captured "
                f"({why}); explain a prediction whose inputs were kept."
            )
        loaded = self.load_model(f"{captured.model}/{captured.version}")
        if loaded.version.digest != captured.model_digest:
            raise InvalidInputError(
                f"prediction {captured.id} was made by {captured.model_digest[:19]} but "
                f"{loaded.version.ref} is {loaded.version.digest[:19]}; the store's records "
                "disagree, run `clew audit verify`."
            )
        import pandas as pd

        row = pd.DataFrame([captured.inputs])
        features = _features(loaded, row, exclude=[])
        back = None if background is None else self._data(background)[0][features]
        contributions, base = _local_shap(loaded.raw, row[features], back)
        return reports.local_document(
            captured.id, captured.output, loaded.version, row[features], contributions, base
        )

    def version_reports(self, ref: VersionRef) -> list[dict[str, Any]]:
        """The bias and explanation reports recorded for a version, newest first."""
        return self._service.explanations.reports(_ref(ref))

    # --- helpers --------------------------------------------------------------------------

    def _data(self, data: Data) -> tuple[pd.DataFrame, ArtifactRecord | None]:
        """The data as a DataFrame, and the artifact it was loaded from (if it was one)."""
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return data, None
        if isinstance(data, ArtifactRecord | str):
            artifact = (
                data if isinstance(data, ArtifactRecord) else self._service.artifacts.resolve(data)
            )
            with tempfile.TemporaryDirectory(prefix="clew-data-") as temp:
                path = self._service.artifacts.export(artifact, Path(temp) / "data.parquet")
                try:
                    return pd.read_parquet(path), artifact
                except (OSError, ValueError) as error:
                    raise InvalidInputError(
                        f"artifact {artifact.name!r} is not a tabular dataset clew logged from a "
                        "DataFrame; pass a DataFrame or such a dataset."
                    ) from error
        raise InvalidInputError(
            f"cannot explain on a {type(data).__name__}; pass a pandas DataFrame or a dataset "
            "logged earlier (its ArtifactRecord or ref)."
        )

    def _recorded(
        self,
        document: dict[str, Any],
        version: VersionRecord,
        frame: pd.DataFrame,
        dataset: ArtifactRecord | None,
        dataset_name: str | None,
        record: bool,
    ) -> dict[str, Any]:
        """Record ``document`` as JSON and HTML report artifacts of an evaluation run that
        consumed the version's model and the data (the data is logged if it was a DataFrame)."""
        if not record:
            return document
        start_run = self.start_run  # type: ignore[attr-defined]
        kind = document["kind"]
        with start_run(
            experiment=EVIDENCE_EXPERIMENT,
            name=f"{kind} {version.ref}",
            kind="evaluation",
            capture_code=False,
        ) as run:
            run.log_input(self._service.artifacts.get(version.artifact_id))
            logged = run.log_input(
                dataset if dataset is not None else frame,
                name=None if dataset is not None else _dataset_name(version, dataset_name),
            )
            facts = {"name": logged.name, "digest": logged.digest, "rows": len(frame)}
            document = {**document, "run_id": run.id, "dataset": facts}
            with tempfile.TemporaryDirectory(prefix="clew-report-") as temp:
                json_path = Path(temp) / f"{kind}.json"
                html_path = Path(temp) / f"{kind}.html"
                json_path.write_text(
                    json.dumps(document, indent=2, sort_keys=True, allow_nan=False)
                )
                html_path.write_text(reports.render_html(document))
                properties = reports.properties_of(document)
                stored = run.log_output(
                    json_path,
                    name=reports.report_name(document),
                    type="report",
                    properties=properties,
                )
                page = run.log_output(
                    html_path,
                    name=f"{reports.report_name(document)}.html",
                    type="report",
                    properties={**properties, "format": "html"},
                    derived_from=[stored],
                )
        return {**document, "report": stored.to_dict(), "html": page.to_dict()}


def _ref(ref: VersionRef) -> str:
    return ref.ref if isinstance(ref, VersionRecord) else str(ref)


def _dataset_name(version: VersionRecord, name: str | None) -> str:
    return name or f"{version.name}-evaluation"


def _dataset_fact(
    dataset: ArtifactRecord | None, frame: pd.DataFrame, name: str | None
) -> dict[str, Any]:
    if dataset is None:
        return {"name": name, "rows": len(frame)}
    return {"name": dataset.name, "digest": dataset.digest, "rows": len(frame)}


def _require_columns(frame: pd.DataFrame, names: Sequence[str], what: str) -> None:
    columns = [str(c) for c in frame.columns]
    for name in names:
        if name not in columns:
            raise InvalidInputError(
                f"{what} {name!r} is not a column of the data (its columns: "
                f"{', '.join(columns[:20])}); add it or name another {what}."
            )


def _features(loaded: LoadedModel, frame: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """The columns the model takes, in its order: what it was fitted on, else its signature,
    else every column but ``exclude``."""
    fitted = getattr(loaded.raw, "feature_names_in_", None)
    names = [str(n) for n in fitted] if fitted is not None else []
    if not names:
        signed = loaded.version.signature.get("inputs") or []
        names = [str(i["name"]) for i in signed if isinstance(i, dict) and i.get("name")]
    if not names or (
        all(n.startswith("f") and n[1:].isdigit() for n in names) and names[0] not in frame
    ):
        names = [str(c) for c in frame.columns if c not in exclude]
    _require_columns(frame, names, "model input")
    return names


def _predict_function(model: Any) -> Any:
    """What to explain: the positive class's probability for a classifier, else predict."""
    import numpy as np

    if hasattr(model, "predict_proba"):
        return lambda x: np.asarray(model.predict_proba(x))[:, -1]
    return model.predict


def explainer_kind(model: Any, method: str = "auto") -> str:
    """``tree``, ``linear`` or ``kernel``: the SHAP method for ``model``."""
    if method != "auto":
        if method not in ("tree", "linear", "kernel"):
            raise InvalidInputError(f"method {method!r} is not one of auto, tree, linear, kernel.")
        return method
    name = type(model).__module__ + "." + type(model).__name__
    if any(word in name for word in ("Forest", "Tree", "Boost", "xgboost", "lightgbm")):
        return "tree"
    if hasattr(model, "coef_") and hasattr(model, "intercept_"):
        return "linear"
    return "kernel"


def _shap() -> Any:
    try:
        import shap
    except ImportError as error:
        raise InvalidInputError(
            "explanations need the explain extra; run `pip install 'clew[explain]'`."
        ) from error
    return shap


def shap_values(
    model: Any, rows: pd.DataFrame, background: pd.DataFrame | None, kind: str
) -> tuple[np.ndarray, float]:
    """SHAP values (rows x features) of the positive class or the regression output, and
    the base value they add up from."""
    shap = _shap()
    if kind == "tree":
        explainer = shap.TreeExplainer(model)
        values = explainer.shap_values(rows, check_additivity=False)
    elif kind == "linear":
        explainer = shap.LinearExplainer(model, background if background is not None else rows)
        values = explainer.shap_values(rows)
    else:
        base = background if background is not None else rows
        sample = shap.sample(base, min(BACKGROUND_ROWS, len(base)), random_state=0)
        explainer = shap.KernelExplainer(_predict_function(model), sample)
        values = explainer.shap_values(rows, nsamples=100, silent=True)
    return _positive(values, explainer.expected_value)


def _positive(values: Any, expected: Any) -> tuple[np.ndarray, float]:
    """The last class's SHAP values and base value (the positive one for a binary model)."""
    import numpy as np

    if isinstance(values, list):
        values = values[-1]
    array = np.asarray(values, dtype=float)
    if array.ndim == 3:
        array = array[:, :, -1]
    base = np.asarray(expected, dtype=float).reshape(-1)
    return array, float(base[-1])


def _global_explanation(
    model: Any,
    frame: pd.DataFrame,
    features: list[str],
    target: str | None,
    method: str,
    max_rows: int,
) -> dict[str, Any]:
    import numpy as np

    kind = explainer_kind(model, method)
    limit = KERNEL_ROWS if kind == "kernel" else max_rows
    rows = frame.sample(limit, random_state=0) if len(frame) > limit else frame
    values, base = shap_values(model, rows[features], frame[features], kind)
    importance = np.abs(values).mean(axis=0)
    found: dict[str, dict[str, float]] = {
        name: {"mean_abs_shap": float(importance[i])} for i, name in enumerate(features)
    }
    if target is not None:
        for name, (mean, std) in _permutation(model, frame, features, target).items():
            found[name].update(permutation_importance=mean, permutation_std=std)
    ranked = sorted(found.items(), key=lambda item: -item[1]["mean_abs_shap"])
    return {
        "method": kind,
        "base_value": base,
        "rows_explained": len(rows),
        "features": [{"feature": name, **figures} for name, figures in ranked],
    }


def _permutation(
    model: Any, frame: pd.DataFrame, features: list[str], target: str
) -> dict[str, tuple[float, float]]:
    from sklearn.inspection import permutation_importance

    _require_columns(frame, [target], "target column")
    rows = (
        frame.sample(PERMUTATION_ROWS, random_state=0) if len(frame) > PERMUTATION_ROWS else frame
    )
    result = permutation_importance(
        model, rows[features], rows[target], n_repeats=PERMUTATION_REPEATS, random_state=0
    )
    return {
        name: (float(result.importances_mean[i]), float(result.importances_std[i]))
        for i, name in enumerate(features)
    }


def _local_shap(
    model: Any, row: pd.DataFrame, background: pd.DataFrame | None
) -> tuple[np.ndarray, float]:
    kind = explainer_kind(model)
    if kind != "tree" and background is None:
        raise InvalidInputError(
            f"a {type(model).__name__} is explained against background data; pass "
            "background= (a DataFrame or the evaluation dataset's ref)."
        )
    values, base = shap_values(model, row, background, kind)
    return values[0], base


def explain(ref: VersionRef, data: Data, **options: Any) -> dict[str, Any]:
    return _client().explain(ref, data, **options)


def bias_report(ref: VersionRef, data: Data, **options: Any) -> dict[str, Any]:
    return _client().bias_report(ref, data, **options)


def explain_prediction(prediction_id: str, **options: Any) -> dict[str, Any]:
    return _client().explain_prediction(prediction_id, **options)


def version_reports(ref: VersionRef) -> list[dict[str, Any]]:
    return _client().version_reports(ref)


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()
