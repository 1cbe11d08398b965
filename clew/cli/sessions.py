"""``clew sessions list|revoke``: a server's web UI sign-ins, through the SDK (admins)."""

from __future__ import annotations

from typing import Annotated

import typer

import clew
from clew.cli.output import console
from clew.domain import records

app = typer.Typer(help="Web UI sessions: who is signed in, and ending a session.")


@app.command("list")
def list_sessions(
    user: Annotated[str | None, typer.Argument(help="Only this user's sessions.")] = None,
    ended: Annotated[bool, typer.Option("--ended", help="Include ended sessions.")] = False,
) -> None:
    """Live web UI sessions (of USER), newest first: id, user, client, since, last seen."""
    for info in clew.sessions(user, ended=ended):
        state = (
            f"ended {records.ms_to_iso(info['revoked_ms'])} by {info['revoked_by']}"
            if info["revoked_ms"] is not None
            else f"until {records.ms_to_iso(info['expires_ms'])}"
        )
        typer.echo(
            f"{info['id']}  {info['user_name']}  from {info['client']}  since "
            f"{records.ms_to_iso(info['created_ms'])}  last seen "
            f"{records.ms_to_iso(info['last_seen_ms'])}  {state}"
        )


@app.command("revoke")
def revoke(
    session_id: Annotated[str, typer.Argument(help="The session id, from `clew sessions list`.")],
) -> None:
    """End a web UI session at once, on every server replica (admins; audited)."""
    info = clew.revoke_session(session_id)
    console.print(f"ended {info['user_name']}'s session {info['id']}; they must sign in again.")
