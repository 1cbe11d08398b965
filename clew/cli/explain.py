"""``clew explain`` and ``clew bias``: explanations and bias reports, recorded as evidence.

``clew explain PREDICTION_ID`` explains one captured decision with the exact version that made
it; ``clew explain REF --data DATA`` explains a version globally on evaluation data and records
the report. ``clew bias REF DATA --target COL --attribute A`` measures bias per sensitive
attribute and records the report. DATA is a CSV or Parquet file, or a dataset logged earlier
(its artifact ref).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.errors import InvalidInputError

DataArgument = Annotated[str, typer.Argument(help="A CSV or Parquet file, or a dataset ref.")]


def _data(text: str) -> Any:
    """A file as a DataFrame; anything else is passed on as a dataset ref."""
    path = Path(text).expanduser()
    if not path.is_file():
        return text
    import pandas as pd

    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise InvalidInputError(
            f"{text} could not be read as {'Parquet' if path.suffix == '.parquet' else 'CSV'} "
            f"({error}); pass a CSV or Parquet file."
        ) from error


def _label(text: str) -> Any:
    """The favourable label as typed: a number when it reads as one (CSV labels are numbers)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def explain(
    subject: Annotated[
        str, typer.Argument(help="A prediction id (01J...XYZ.0) or a version ref (churn/3).")
    ],
    data: Annotated[
        str | None, typer.Option("--data", help="Evaluation data for a version's explanation.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="The label column (adds permutation importance).")
    ] = None,
    background: Annotated[
        str | None, typer.Option("--background", help="Background data for non-tree models.")
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Explain one captured prediction, or a version globally on --data (recorded as evidence)."""
    if "/" in subject or "@" in subject:
        if data is None:
            raise InvalidInputError(
                f"explaining version {subject} needs evaluation data; pass --data FILE_OR_REF."
            )
        found = clew.explain(subject, _data(data), target=target)
        rows = [
            [f["feature"], f["mean_abs_shap"], f.get("permutation_importance")]
            for f in found["features"]
        ]
        header = ["feature", "mean |SHAP|", "permutation importance"]
        title = f"{found['model']['ref']}: {found['method']} explanation, recorded"
    else:
        options = {} if background is None else {"background": _data(background)}
        found = clew.explain_prediction(subject.removeprefix("prediction:"), **options)
        rows = [[c["feature"], c["value"], c["shap"]] for c in found["contributions"]]
        header = ["feature", "value", "SHAP"]
        title = (
            f"prediction {found['prediction_id']} by {found['model']['ref']}: "
            f"output {found['output']}, base value {found['base_value']:.4g}"
        )
    if format is Format.json:
        output.print_json(found)
    else:
        console.print(title, highlight=False, soft_wrap=True)
        console.print(output.table(header, rows))


def bias(
    ref: Annotated[str, typer.Argument(help="A version ref, e.g. churn/3 or churn@production.")],
    data: DataArgument,
    target: Annotated[str, typer.Option("--target", help="The label column.")],
    attribute: Annotated[
        list[str], typer.Option("--attribute", "-a", help="A sensitive attribute (repeat).")
    ],
    positive_label: Annotated[
        str, typer.Option("--positive-label", help="The favourable label (default 1).")
    ] = "1",
    pre_training: Annotated[
        bool, typer.Option("--pre-training", help="Measure the labels only, without the model.")
    ] = False,
    format: FormatOption = Format.table,
) -> None:
    """Bias per sensitive attribute on DATA, recorded as a report on the version."""
    frame = _data(data)
    found = clew.bias_report(
        ref,
        frame,
        target=target,
        attributes=attribute,
        positive_label=_label(positive_label),
        predict=not pre_training,
    )
    if format is Format.json:
        output.print_json(found)
        return
    for name, measured in found["attributes"].items():
        rows = [
            [
                g["group"],
                g["rows"],
                g["class_imbalance"],
                g["dpl"],
                (g.get("selection_rate") or {}).get("value"),
                (g.get("tpr") or {}).get("value"),
                (g.get("fpr") or {}).get("value"),
            ]
            for g in measured["groups"]
        ]
        title = f"{name}: disparate impact {measured.get('disparate_impact')}"
        console.print(
            output.table(["group", "rows", "CI", "DPL", "selection", "TPR", "FPR"], rows, title)
        )
        for note in measured["notes"]:
            console.print(f"note: {note}")
