"""Explanation and bias reports as documents: their JSON shape, their HTML page, their name.

The client computes a report (it holds the model) and records it through the run API; this
module fixes what the document says, so the evidence check (clew/service/bias.py) reads every
report the same way, and renders the self-contained HTML page a validator opens. Every value
that came from data, a model or a user (feature names, group names, model names) is escaped
with ``html.escape``; the page has no script, so a name such as ``<script>`` renders as text.
No store is touched here, so the remote client can build reports too.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from clew.domain.records import VersionRecord

SCHEMA = 1
BIAS, EXPLANATION = "bias", "explanation"
KINDS = (BIAS, EXPLANATION)


def _version_fact(version: VersionRecord) -> dict[str, Any]:
    return {
        "ref": version.ref,
        "model": version.name,
        "version": version.version,
        "digest": version.digest,
    }


def bias_document(
    metrics: Mapping[str, Any], version: VersionRecord, dataset: Mapping[str, Any], target: str
) -> dict[str, Any]:
    """A bias report: ``BiasMetrics.to_dict()`` (clew/domain/bias.py) about ``version``."""
    return {
        "kind": BIAS,
        "schema": SCHEMA,
        "model": _version_fact(version),
        "dataset": dict(dataset),
        "target": target,
        **metrics,
    }


def explanation_document(
    explanation: Mapping[str, Any], version: VersionRecord, dataset: Mapping[str, Any]
) -> dict[str, Any]:
    """A global explanation: features ranked by mean |SHAP|, with permutation importance."""
    return {
        "kind": EXPLANATION,
        "schema": SCHEMA,
        "scope": "global",
        "model": _version_fact(version),
        "dataset": dict(dataset),
        **explanation,
    }


def local_document(
    prediction_id: str,
    output: Any,
    version: VersionRecord,
    row: Any,
    contributions: Any,
    base_value: float,
) -> dict[str, Any]:
    """A local explanation of one captured prediction: each input's value and contribution."""
    values = row.iloc[0].to_dict()
    ranked = sorted(
        zip(row.columns, contributions, strict=True), key=lambda item: -abs(float(item[1]))
    )
    return {
        "kind": EXPLANATION,
        "schema": SCHEMA,
        "scope": "local",
        "prediction_id": prediction_id,
        "output": output,
        "model": _version_fact(version),
        "base_value": base_value,
        "contributions": [
            {"feature": str(name), "value": _plain(values[name]), "shap": float(value)}
            for name, value in ranked
        ],
    }


def report_name(document: Mapping[str, Any]) -> str:
    """The artifact name of a report: ``<model>-v<version>-<kind>``."""
    model = document["model"]
    return f"{model['model']}-v{model['version']}-{document['kind']}"


def properties_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the report artifact's properties say about it (the check reads the JSON itself)."""
    properties: dict[str, Any] = {
        "clew_report": document["kind"],
        "model_version": document["model"]["ref"],
        "format": "json",
    }
    if document["kind"] == BIAS:
        properties["attributes"] = sorted(document.get("attributes", {}))
    else:
        properties["scope"] = document.get("scope", "global")
    return properties


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


# --- HTML ---------------------------------------------------------------------------------

_STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th:first-child,td:first-child{text-align:left}.note{color:#a40}"
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return _e(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_number(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rate(cell: Any) -> str:
    if not isinstance(cell, Mapping) or cell.get("value") is None:
        return "—"
    return f"{cell['value']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def _bias_body(document: Mapping[str, Any]) -> str:
    parts = []
    for name, attribute in document.get("attributes", {}).items():
        summary = [
            [key.replace("_", " "), attribute.get(key)]
            for key in (
                "disparate_impact",
                "demographic_parity_difference",
                "equalized_odds_difference",
                "equal_opportunity_difference",
            )
            if key in attribute
        ]
        groups = [
            [
                g["group"],
                g["rows"],
                g["class_imbalance"],
                g["dpl"],
                *(
                    _rate(g.get(rate))
                    for rate in ("selection_rate", "accuracy", "tpr", "fpr", "fnr")
                ),
            ]
            for g in attribute["groups"]
        ]
        notes = "".join(f"<p class=note>{_e(note)}</p>" for note in attribute.get("notes", []))
        parts.append(
            f"<h2>{_e(name)}</h2>"
            + (_table(["measure", "value"], summary) if summary else "")
            + _table(
                ["group", "rows", "CI", "DPL", "selection rate", "accuracy", "TPR", "FPR", "FNR"],
                groups,
            )
            + notes
        )
    return "".join(parts)


def _explanation_body(document: Mapping[str, Any]) -> str:
    if document.get("scope") == "local":
        rows = [[c["feature"], c["value"], c["shap"]] for c in document["contributions"]]
        return (
            f"<p>prediction {_e(document['prediction_id'])}: output {_e(document['output'])}, "
            f"base value {_number(document['base_value'])}</p>"
            + _table(["feature", "value", "SHAP"], rows)
        )
    rows = [
        [
            f["feature"],
            f["mean_abs_shap"],
            f.get("permutation_importance"),
            f.get("permutation_std"),
        ]
        for f in document["features"]
    ]
    return (
        f"<p>method: {_e(document['method'])}, rows explained: {_e(document['rows_explained'])}</p>"
        + _table(["feature", "mean |SHAP|", "permutation importance", "std"], rows)
    )


def render_html(document: Mapping[str, Any]) -> str:
    """The report as one self-contained, script-free HTML page with every value escaped."""
    model = document["model"]
    title = f"{document['kind']} report: {model['ref']}"
    dataset = document.get("dataset") or {}
    facts = _table(
        ["fact", "value"],
        [
            ["model version", model["ref"]],
            ["model digest", model["digest"]],
            ["dataset", dataset.get("name")],
            ["dataset digest", dataset.get("digest")],
            ["rows", dataset.get("rows", document.get("rows"))],
        ],
    )
    body = _bias_body(document) if document["kind"] == BIAS else _explanation_body(document)
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{_e(title)}</h1>{facts}{body}</body></html>"
    )
