"""``clew export sr11-7`` and ``clew export annex-iv REF``: regulator documents, through the SDK."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

import clew
from clew.cli.output import console

app = typer.Typer(help="Regulator documents generated from the records.", no_args_is_help=True)

OutOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
]


@app.command("sr11-7")
def sr11_7(
    to: Annotated[str, typer.Option("--format", "-f", help="csv or xlsx.")] = "csv",
    out: OutOption = None,
) -> None:
    """The SR 11-7 model inventory, one row per model (XLSX needs the exports extra)."""
    _write(clew.export_sr11_7(to), out, f"the SR 11-7 inventory as {to}")


@app.command("annex-iv")
def annex_iv(
    ref: Annotated[str, typer.Argument(help="MODEL/VERSION or MODEL@ALIAS.")],
    out: OutOption = None,
) -> None:
    """The version's EU AI Act Annex IV pack (JSON), each statement linked to its record and
    the pack signed with the store's key."""
    pack = clew.annex_iv(ref)
    data = json.dumps(pack, indent=2, sort_keys=True).encode()
    _write(data, out, f"the Annex IV pack of {pack['ref']} ({pack['digest']})")


def _write(data: bytes, out: Path | None, what: str) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    out.write_bytes(data)
    console.print(f"wrote {what} to {out}.")
