"""The ``clew`` command: one Typer app, one module per command group.

Commands are thin: they call the SDK (``clew.*`` on the default client, which reads
``CLEW_URI`` / ``CLEW_HOME``) and render the result; rules live in ``clew/service``.

A command's module is imported only when that command runs (``LazyGroup``): importing them all
loaded pandas, SQLAlchemy and pyarrow, ~1.2 CPU-seconds before ``clew --help`` printed a line.
The root help lists each command from ``COMMANDS`` instead; tests/test_cli_startup.py checks
that every entry matches the command it names.
"""

from __future__ import annotations

import typer

import clew
from clew.cli.lazy import LazyGroup, Listed

# name: (module, attribute, the first paragraph of its help). Commands first, then groups.
COMMANDS: dict[str, Listed] = {
    "lineage": Listed("clew.cli.lineage", "lineage", "Walk the lineage graph from REF."),
    "verify": Listed(
        "clew.cli.verify",
        "verify",
        "Check the database's structure and re-hash every stored blob; exit 1 naming any "
        "damaged table and any digest that is missing or altered.",
    ),
    "versions": Listed(
        "clew.cli.registry",
        "versions",
        "Every version of a model, newest first, with its status and aliases.",
    ),
    "status": Listed(
        "clew.cli.status",
        "status",
        "A version's approvals, aliases and policy standing; or, with --at or --endpoint (or "
        "nothing), which version answered each endpoint at that time.",
    ),
    "register": Listed(
        "clew.cli.registry",
        "register",
        "Register the next version of NAME from a run's model (or a model artifact ref).",
    ),
    "approve": Listed(
        "clew.cli.registry",
        "approve",
        "Approve a version as the current user (CLEW_USER); the creator may not approve.",
    ),
    "reject": Listed(
        "clew.cli.registry", "reject", "Reject a version; it can never be promoted or loaded."
    ),
    "revoke": Listed(
        "clew.cli.registry",
        "revoke",
        "Revoke an approved version; loading it is refused from now on.",
    ),
    "archive": Listed(
        "clew.cli.registry", "archive", "Archive a version; it can no longer be promoted."
    ),
    "promote": Listed(
        "clew.cli.registry",
        "promote",
        "Point NAME@ALIAS at a version (production aliases need the policy met).",
    ),
    "rollback": Listed(
        "clew.cli.registry",
        "rollback",
        "Return NAME@ALIAS to the version it pointed at before its latest promotion.",
    ),
    "trace": Listed(
        "clew.cli.trace",
        "trace",
        "Walk from a prediction to its model version, approvals, training run and data.",
    ),
    "reproduce": Listed(
        "clew.cli.reproduce",
        "reproduce",
        "Re-run a version from its recorded commit, inputs and command; sign the verdict.",
    ),
    "explain": Listed(
        "clew.cli.explain",
        "explain",
        "Explain one captured prediction, or a version globally on --data (recorded as evidence).",
    ),
    "bias": Listed(
        "clew.cli.explain",
        "bias",
        "Bias per sensitive attribute on DATA, recorded as a report on the version.",
    ),
    "serve": Listed(
        "clew.cli.serve",
        "serve",
        "Serve POST /predict and GET /health for REF until interrupted.",
    ),
    "predict": Listed(
        "clew.cli.predict",
        "predict",
        "Score every row of INPUT with REF into OUTPUT; each row is captured and traceable.",
    ),
    "demo": Listed(
        "clew.cli.demo",
        "demo",
        "Train, register, approve, promote, serve and trace a scikit-learn model end to end.",
    ),
    "ui": Listed(
        "clew.cli.ui",
        "ui",
        "Serve the web UI for the store in CLEW_HOME / CLEW_URI, acting as you (CLEW_USER).",
    ),
    "backup": Listed(
        "clew.cli.ops",
        "backup",
        "Write metadata, referenced blobs, capture files and keys to one verified archive.",
    ),
    "restore": Listed(
        "clew.cli.ops",
        "restore",
        "Restore a backup into an empty store, then verify blobs, audit chain and counts.",
    ),
    "gc": Listed(
        "clew.cli.ops",
        "gc",
        "Delete blobs no record points at, capture files no batch names, temp files of "
        "interrupted writes and expired idempotency keys (a dry run unless --yes); referenced "
        "blobs and recorded capture files never go.",
    ),
    "server": Listed(
        "clew.cli.server",
        "server",
        "Serve the clew API (/api/v1, OpenAPI at /api/v1/openapi.json) until interrupted.",
    ),
    "runs": Listed("clew.cli.runs", "app", "List, show and search experiment runs."),
    "artifacts": Listed("clew.cli.artifacts", "app", "Record files and directories as artifacts."),
    "models": Listed("clew.cli.registry", "models_app", "Registered models."),
    "policy": Listed(
        "clew.cli.registry",
        "policy_app",
        "The governance policy (who may approve, what production needs).",
    ),
    "audit": Listed("clew.cli.audit", "app", "The hash-chained audit trail."),
    "keys": Listed(
        "clew.cli.keys", "app", "The capture signing key, and users' approval signing keys."
    ),
    "db": Listed("clew.cli.ops", "db_app", "The metadata database's schema."),
    "admin": Listed(
        "clew.cli.server",
        "admin_app",
        "Users, API tokens and per-model grants of a clew server.",
    ),
    "sessions": Listed(
        "clew.cli.sessions",
        "app",
        "Web UI sessions: who is signed in, and ending a session.",
    ),
    "webhooks": Listed(
        "clew.cli.webhooks",
        "app",
        "Webhooks: registry and monitoring events sent to your URLs, signed.",
    ),
    "shadow": Listed("clew.cli.shadow", "app", "Shadow deployments."),
    "pipeline": Listed(
        "clew.cli.pipeline", "app", "Pipelines: executions of @clew.step functions."
    ),
    "monitor": Listed(
        "clew.cli.monitor",
        "monitor_app",
        "Model monitoring: baselines, checks, monitor runs, schedules and violations.",
    ),
    "findings": Listed(
        "clew.cli.findings", "app", "Validation findings (SR 11-7) against model versions."
    ),
    "card": Listed(
        "clew.cli.cards",
        "app",
        "Model cards: facts from lineage, edited fields versioned; JSON, SageMaker, HTML, PDF.",
    ),
    "export": Listed("clew.cli.exports", "app", "Regulator documents generated from the records."),
    "review": Listed(
        "clew.cli.findings",
        "review_app",
        "Model reviews by risk tier: record one, see what is due, raise overdue events.",
    ),
    "import": Listed(
        "clew.cli.imports",
        "app",
        "Bring history from other tools (MLflow, DVC) into clew's lineage.",
    ),
}

app = typer.Typer(
    cls=LazyGroup.listing(COMMANDS),
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
