"""``clew predict REF INPUT OUTPUT``: score a Parquet or CSV file, every row captured.

The job streams the input in chunks (a Rich progress bar on stderr shows the rows done) and is
recorded as a run in lineage: input dataset and model in, output dataset out.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console, err_console


def predict(
    ref: Annotated[str, typer.Argument(help="The version to score with, e.g. churn@production.")],
    input: Annotated[str, typer.Argument(help="A Parquet or CSV file: a path or an s3:// URL.")],
    output_: Annotated[
        str, typer.Argument(metavar="OUTPUT", help="Where to write prediction_id + outputs.")
    ],
    proba: Annotated[
        bool, typer.Option("--proba", help="Write class probabilities (predict_proba).")
    ] = False,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="Rows read, scored and written at a time.")
    ] = 100_000,
    file_format: Annotated[
        str | None,
        typer.Option("--file-format", help="parquet or csv, when the suffixes do not say."),
    ] = None,
    input_sampling: Annotated[
        float,
        typer.Option(
            "--input-sampling", min=0.0, max=1.0, help="Share of rows whose inputs are captured."
        ),
    ] = 1.0,
    format: FormatOption = Format.table,
) -> None:
    """Score every row of INPUT with REF into OUTPUT; each row is captured and traceable."""
    bar = Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    with bar:
        task = bar.add_task("rows", total=None)
        result = clew.predict_batch(
            ref,
            input,
            output_,
            proba=proba,
            chunk_rows=chunk_rows,
            format=file_format,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            input_sampling=input_sampling,
        )
    if format is Format.json:
        output.print_json(result.to_dict())
        return
    console.print(
        f"scored [bold]{result.rows}[/bold] rows with {result.model} into {result.output_path}"
        f"\nrun:{result.run_id}  {result.input} -> {result.output}"
    )
