"""``clew ui``: browse the embedded store in a web browser (models, lineage, runs, audit)."""

from __future__ import annotations

from typing import Annotated

import typer

from clew.extras import require_extra

DEFAULT_PORT = 5050


def ui(
    host: Annotated[
        str, typer.Option(help="Interface to listen on; keep 127.0.0.1 unless you need more.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
) -> None:
    """Serve the web UI for the store in CLEW_HOME / CLEW_URI, acting as you (CLEW_USER)."""
    require_extra("server", "clew ui")
    from clew.client import admin

    app = admin.ui_app(host)
    typer.echo(f"clew ui: http://{host}:{port}/ui/  (Ctrl+C to stop)")
    admin.run_ui(app, host, port)
