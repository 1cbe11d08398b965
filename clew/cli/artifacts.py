"""``clew artifacts add PATH``: record a file or directory, with a progress bar while hashing.

Large datasets are where hashing time shows, so this is the command that shows it: bytes are
hashed and copied into the content-addressed store once, then recorded as an artifact that
runs can name by ref (``dataset:<name>``) or digest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.cli.verify import byte_progress

app = typer.Typer(help="Record files and directories as artifacts.", no_args_is_help=True)


@app.command("add")
def add(
    path: Annotated[Path, typer.Argument(help="A file or directory to record.")],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Artifact name (default: file name).")
    ] = None,
    type: Annotated[
        str, typer.Option("--type", "-t", help="dataset, model, report, file...")
    ] = "dataset",
    format: FormatOption = Format.table,
) -> None:
    """Hash PATH into the store and record it as an artifact."""
    with byte_progress(f"hashing {path.name}", _size(path)) as progress:
        artifact = clew.get_client()._record(
            path, name, type, "output", None, None, progress=progress
        )
    if format is Format.json:
        output.print_json(artifact.to_dict())
        return
    console.print(
        f"[green]recorded[/green] {artifact.type}:{artifact.name}@{artifact.digest} "
        f"({artifact.size or 0:,} bytes)"
    )


def _size(path: Path) -> int | None:
    """Total bytes to hash, for the bar; None (an indeterminate bar) if it can't be read."""
    try:
        if path.is_dir():
            return sum(
                (Path(root) / name).stat().st_size
                for root, _, names in os.walk(path)
                for name in names
            )
        return path.stat().st_size
    except OSError:
        return None
