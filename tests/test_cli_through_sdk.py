"""The CLI goes through the SDK: ``clew audit log|verify`` against a store or a server alike.

Checkpoint exports too: the server signs and checks, this process writes and reads the
file. What only the store's host can do (re-hash every blob, back up, collect garbage,
upgrade the schema, manage accounts) is refused against a server with one sentence saying
where to run it; an unreachable server is "unavailable" (check the address, retry), never
"busy" (another writer holds the lock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from server_fixtures import RunningServer, serve, server_store
from tamper import execute_sql
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import ServerUnavailableError, StoreBusyError, StoreUnavailableError
from clew.store.location import Store

runner = CliRunner(env={"COLUMNS": "200"})


def _one_sentence(result: object, *contains: str) -> str:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    for text in contains:
        assert text in lines[0], lines[0]
    return lines[0]


def _logged_run(client: clew.Client) -> str:
    with client.start_run(experiment="audited") as run:
        run.log_params({"alpha": 1, "beta": 2})
    return run.id


def test_audit_log_and_verify_go_through_the_sdk(client: clew.Client) -> None:
    run_id = _logged_run(client)
    entries = client.audit_log(f"run:{run_id}")
    assert entries and all(entry.target == f"run:{run_id}" for entry in entries)
    assert [e.seq for e in entries] == sorted((e.seq for e in entries), reverse=True)
    assert client.audit_log(action="run.", limit=1)[0].action.startswith("run.")
    assert client.audit_log(actor="nobody-at-all") == []
    report = client.verify_audit()
    assert report.ok and report.failure() is None
    assert report.entries_checked >= len(entries) and report.rows_checked > 0

    listed = runner.invoke(app, ["audit", "log", "--target", f"run:{run_id}", "-f", "json"])
    assert listed.exit_code == 0, listed.output
    assert [e["seq"] for e in json.loads(listed.stdout)["entries"]] == [e.seq for e in entries]
    verified = runner.invoke(app, ["audit", "verify", "--format", "json"])
    assert verified.exit_code == 0, verified.output
    shown = json.loads(verified.stdout)
    assert shown["ok"] is True and shown["entries_checked"] == report.entries_checked
    assert shown["batch_problems"] == [] and shown["checkpoint_problems"] == []


@pytest.mark.tampers
def test_audit_verify_names_an_altered_record_through_the_sdk(
    client: clew.Client, store: Store
) -> None:
    run_id = _logged_run(client)
    execute_sql(
        store, "UPDATE params SET value = '7' WHERE run_id = :run AND key = 'alpha'", run=run_id
    )
    report = client.verify_audit()
    assert not report.ok and [p.table for p in report.row_problems] == ["params"]
    failure = report.failure()
    assert failure is not None and "params" in failure
    result = runner.invoke(app, ["audit", "verify"])
    _one_sentence(result, "records differ from the audit chain", "params")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningServer]:
    """A ``clew server`` on a store of its own, whichever client the test pass uses."""
    yield from serve(*server_store(tmp_path))


def _against(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's default client: ``server``, as its admin alice."""
    monkeypatch.setenv("CLEW_URI", server.url)
    monkeypatch.setenv("CLEW_TOKEN", server.user("alice", "admin"))


@pytest.mark.backend_independent
def test_audit_commands_work_against_a_server_address(
    served: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _against(served, monkeypatch)
    listed = runner.invoke(app, ["audit", "log", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.stdout)["entries"]
    first = entries[-1]  # the server's own store, read remotely: creating alice came first
    assert (first["action"], first["target"]) == ("user.create", "user:alice")
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "the chain is intact" in verified.stdout


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "command",
    [
        ["verify"],
        ["backup", "archive.tar"],
        ["gc"],
        ["db", "upgrade"],
        ["admin", "create-user", "bob", "--role", "viewer"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_commands_for_the_store_host_say_where_to_run_them(
    served: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    _against(served, monkeypatch)
    monkeypatch.chdir(tmp_path)
    line = _one_sentence(runner.invoke(app, command), served.url, "run it on the server host")
    assert "--uri" in line
    assert not (tmp_path / command[-1]).exists()


@pytest.mark.backend_independent
def test_clew_ui_against_a_server_address_points_at_the_servers_own_ui(
    served: RunningServer,
) -> None:
    """In a subprocess with a deadline: were it not refused, it would serve until killed."""
    env = {**os.environ, "CLEW_URI": served.url, "CLEW_TOKEN": served.user("alice", "admin")}
    port = str(free_port())
    done = subprocess.run(
        [sys.executable, "-c", f"from clew.cli.main import app; app(['ui', '--port', '{port}'])"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert f"{served.url} is a clew server" in lines[0] and "/ui/" in lines[0]
    assert "clew ui: http" not in done.stdout


def test_checkpoints_are_exported_and_checked_through_a_server(
    served: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The server signs its head and checks its chain; this process writes and reads the
    export, which the server never touches."""
    _against(served, monkeypatch)
    export = tmp_path / "exports" / "checkpoints.jsonl"
    written = runner.invoke(app, ["audit", "checkpoint", "export", str(export)])
    assert written.exit_code == 0, written.output
    lines = export.read_text().splitlines()
    assert lines and f"wrote {len(lines)} signed checkpoints" in written.stdout
    checked = runner.invoke(app, ["audit", "verify", "--against", str(export), "-f", "json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["ok"] is True and report["checkpoints_checked"] == len(lines)

    forged = json.loads(lines[-1])
    forged["hash"] = "sha256:" + "0" * 64
    export.write_text("\n".join([*lines[:-1], json.dumps(forged)]) + "\n")
    result = runner.invoke(app, ["audit", "verify", "--against", str(export)])
    _one_sentence(result, f"signed checkpoint #{forged['seq']} no longer matches")


@pytest.mark.backend_independent
def test_an_unreachable_server_is_unavailable_not_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = clew.connect(address, token="clew_unused")
    with pytest.raises(ServerUnavailableError) as raised:
        client.audit_log()
    assert isinstance(raised.value, StoreUnavailableError)
    assert not isinstance(raised.value, StoreBusyError)
    message = str(raised.value)
    assert address in message and "address" in message and "retry" in message
    assert "locked" not in message
    monkeypatch.setenv("CLEW_URI", address)
    monkeypatch.setenv("CLEW_TOKEN", "clew_unused")
    _one_sentence(runner.invoke(app, ["audit", "log"]), address, "did not answer", "retry")
