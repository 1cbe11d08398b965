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
    import uvicorn

    import clew
    from clew.server.ui import create_ui_app

    hosts = None if host in ("127.0.0.1", "localhost") else [host, "127.0.0.1", "localhost"]
    app = create_ui_app(clew.get_client(), allowed_hosts=hosts)
    typer.echo(f"clew ui: http://{host}:{port}/ui/  (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
