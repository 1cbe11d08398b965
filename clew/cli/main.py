"""The ``clew`` command: one Typer app, one module per command group.

Commands are thin: they call the SDK (``clew.*`` on the default client, which reads
``CLEW_URI`` / ``CLEW_HOME``) and render the result; rules live in ``clew/service``.
"""

from __future__ import annotations

import typer

import clew
from clew.cli import (
    artifacts,
    audit,
    demo,
    keys,
    lineage,
    ops,
    registry,
    runs,
    serve,
    server,
    sessions,
    trace,
    ui,
    verify,
)
from clew.cli.output import ClewGroup

app = typer.Typer(
    cls=ClewGroup,
    name="clew",
    help="Follow the thread from any prediction back to the model, approval, data and code.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"clew {clew.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_show_version,
        is_eager=True,
        help="Print clew's version and exit.",
    ),
) -> None:
    """clew: model registry, lineage store and experiment tracker (CLEW_HOME, CLEW_URI)."""


app.add_typer(runs.app, name="runs")
app.command("lineage")(lineage.lineage)
app.command("verify")(verify.verify)
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(registry.models_app, name="models")
app.command("versions")(registry.versions)
app.command("status")(registry.status)
app.command("register")(registry.register)
app.command("approve")(registry.approve)
app.command("reject")(registry.reject)
app.command("revoke")(registry.revoke)
app.command("archive")(registry.archive)
app.command("promote")(registry.promote)
app.command("rollback")(registry.rollback)
app.add_typer(registry.policy_app, name="policy")
app.command("trace")(trace.trace)
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("ui")(ui.ui)
app.command("backup")(ops.backup)
app.command("restore")(ops.restore)
app.command("gc")(ops.gc)
app.add_typer(ops.db_app, name="db")
app.command("server")(server.server)
app.add_typer(server.admin_app, name="admin")
app.add_typer(sessions.app, name="sessions")
