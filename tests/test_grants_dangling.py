"""Grants an older store accepted on names no model had (issue 14): reported by `clew admin
grants --dangling`, at server start, and revoked with one command.

The grants are written straight into ``model_grants``, as a store from before grants were
checked holds them. SQLite, or PostgreSQL + S3 under ``CLEW_TEST_BACKEND=postgres-s3``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from server_fixtures import server_store, wait_until_ready
from sqlalchemy import select
from typer.testing import CliRunner

from clew.cli.main import app as cli
from clew.service import accounts, verification
from clew.service.container import ServiceContainer
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

GHOST = (
    "model 'ghost' does not exist, so whoever registers that name gets 'val''s approver "
    "rights on it"
)
PRICING = (
    "the grant is older than model 'pricing', so 'mallory' registered a name that already "
    "carried 'sam''s contributor rights"
)


@pytest.fixture
def old_store(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    """A store holding two grants the old code let through (on 'ghost', which nobody has
    registered, and on 'pricing' before mallory registered it) and two sound ones."""
    store, root = server_store(tmp_path)
    registry = ServiceContainer(store).registry
    for name in ("sam", "val", "mallory"):
        accounts.create_user(store, name, "viewer", actor="admin")
    registry.create_model("churn", "alice")
    with store.db.write() as connection:
        for user, model, role in (("val", "ghost", "approver"), ("sam", "pricing", "contributor")):
            row = {"user_name": user, "model_name": model, "role": role}
            values = {**row, "created_ms": now_ms() - 60_000, "created_by": "admin"}
            connection.execute(schema.model_grants.insert().values(**values))
    registry.create_model("pricing", "mallory")
    accounts.grant(store, "sam", "churn", "contributor", actor="admin")
    accounts.grant(store, "sam", "fraud-*", "contributor", actor="admin")
    uri = str(store.db.url) if "postgresql" in store.db.url else str(root)
    yield store, uri
    store.close()


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_dangling_grants_are_listed_with_the_reason_and_revoked_in_one_command(
    old_store: tuple[Store, str],
) -> None:
    store, uri = old_store
    found = accounts.dangling_grants(store)
    assert [(g.user, g.model, g.role, g.problem) for g in found] == [
        ("sam", "pricing", "contributor", PRICING),
        ("val", "ghost", "approver", GHOST),
    ]
    every = {(g.user, g.model): g.problem for g in accounts.list_grants(store)}
    assert every[("sam", "churn")] is None and every[("sam", "fraud-*")] is None
    listed = " ".join(_cli("admin", "grants", "--dangling", "--uri", uri).split())
    assert "ghost" in listed and "pricing" in listed and "churn" not in listed
    assert "2 dangling: revoke them with `clew admin revoke-grant --dangling`" in listed

    revoked = _cli("admin", "revoke-grant", "--dangling", "--uri", uri)
    assert "revoked val's approver grant on ghost" in revoked
    assert "revoked sam's contributor grant on pricing" in revoked
    assert "revoked 2 dangling grant(s)" in revoked
    assert accounts.dangling_grants(store) == []
    assert sorted(g.model for g in accounts.list_grants(store)) == ["churn", "fraud-*"]
    with store.db.read() as connection:
        assert accounts.grants_of(connection, "val") == {}
        entries = connection.execute(
            select(schema.audit_log.c.target).where(schema.audit_log.c.action == "grant.revoke")
        ).scalars()
        assert sorted(entries) == ["user:sam", "user:val"]
    assert verification.verify_audit(store).ok
    assert "no dangling grants" in _cli("admin", "grants", "--dangling", "--uri", uri)


def test_one_grant_is_revoked_by_name_and_a_wrong_call_gets_one_sentence(
    old_store: tuple[Store, str],
) -> None:
    store, uri = old_store
    assert "revoked sam's grant on churn" in _cli(
        "admin", "revoke-grant", "sam", "churn", "--uri", uri
    )
    runner = CliRunner()
    for args, sentence in (
        (
            ["sam", "churn"],
            "user 'sam' has no grant on 'churn'; list grants with `clew admin grants`.",
        ),
        ([], "name USER and MODEL, or pass --dangling alone."),
        (["sam"], "name USER and MODEL, or pass --dangling alone."),
        (["sam", "pricing", "--dangling"], "name USER and MODEL, or pass --dangling alone."),
    ):
        result = runner.invoke(cli, ["admin", "revoke-grant", *args, "--uri", uri])
        assert result.exit_code == 1 and sentence in " ".join(result.output.split())
        assert "Traceback" not in result.output
    assert len(accounts.dangling_grants(store)) == 2  # a refused call revoked nothing


def test_a_starting_server_logs_one_line_per_dangling_grant(
    old_store: tuple[Store, str], tmp_path: Path
) -> None:
    _, uri = old_store
    port = free_port()
    launcher = "import typer; from clew.cli.server import server; typer.run(server)"
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "--uri", uri, "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, time.monotonic() + 120)
        assert httpx.get(f"{url}/api/v1/health").status_code == 200
    finally:
        process.terminate()
        process.wait(30)
    lines = [line for line in log.read_text().splitlines() if "dangling grant" in line]
    fix = "revoke them with `clew admin revoke-grant --dangling`, then grant what should stay."
    assert lines == [
        f"dangling grant: sam is contributor on 'pricing': {PRICING}; {fix}",
        f"dangling grant: val is approver on 'ghost': {GHOST}; {fix}",
    ]
