"""``clew server``'s scheduler raises overdue reviews: two real servers on one PostgreSQL + S3.

A validator sets a real past due date (no clock is mocked); both servers' review threads tick
every 0.2 s, yet the store holds exactly one ``review_overdue`` event, raised by the server, and
the webhook deliverer sends it to a real receiver exactly once, signed. A restarted server does
not raise it again: the event is found in the store, not in a server's memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from server_fixtures import wait_until_ready
from test_findings import POLICY, _train
from test_webhooks import ALLOW_ENV, Receiver, receiver_check, run_receiver

import clew
from clew.server.monitor_scheduler import REVIEW_ACTOR
from clew.service import accounts, signing
from clew.service.webhook_secrets import KEY_ENV
from clew.store.location import open_store

LAUNCHER = "import typer; from clew.cli.server import server; typer.run(server)"
PAST_DAY = "2026-01-02"


class Servers:
    """``clew server`` processes on one store, started and stopped by the test."""

    def __init__(self, environment: dict[str, str], logs: Path) -> None:
        self.environment = environment
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        port = free_port()
        log = (self.logs / f"server-{len(self.running)}-{port}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "--port", str(port)],
            env=self.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.running.append(process)
        wait_until_ready(f"http://127.0.0.1:{port}", process, time.monotonic() + 90)

    def stop(self) -> None:
        for process in self.running:
            process.terminate()
            process.wait(30)
        self.running.clear()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1/32")
    yield from run_receiver()


@pytest.fixture
def servers(
    postgres_url: str,
    s3_artifacts: str,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Servers]:
    """Servers on one PostgreSQL + S3 store, sharing the store's and the webhook key with the
    test (as a team's replicas do)."""
    webhook_key = tmp_path / "webhook.key"
    webhook_key.write_bytes(os.urandom(32))
    monkeypatch.setenv(KEY_ENV, str(webhook_key))
    store = open_store(postgres_url, s3_artifacts)
    accounts.create_user(store, "alice", "admin", actor="test-admin")
    store.close()
    key = tmp_path / "store-key.pem"
    signing.create_key_file(key)
    environment = os.environ | {
        "CLEW_URI": postgres_url,
        "CLEW_ARTIFACTS": s3_artifacts,
        "CLEW_SIGNING_KEY": str(key),
        "CLEW_HOME": str(tmp_path / "replica-home"),
        "CLEW_MONITOR_INTERVAL": "0",
        "CLEW_REVIEW_INTERVAL": "0.2",
        "CLEW_WEBHOOK_INTERVAL_SECONDS": "0.2",
        ALLOW_ENV: "127.0.0.1/32",
        KEY_ENV: str(webhook_key),
    }
    running = Servers(environment, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _overdue(client: clew.Client) -> list[clew.RegistryEvent]:
    return [e for e in client.model_history("credit") if e.kind == "review_overdue"]


def _wait_for_delivery(receiver: Receiver, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not receiver.received:
        time.sleep(0.1)


@pytest.mark.postgres
@pytest.mark.s3
@pytest.mark.embedded_only  # starts its own servers
def test_two_servers_raise_an_overdue_review_once_and_a_webhook_delivers_it(
    postgres_url: str,
    s3_artifacts: str,
    servers: Servers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = clew.connect(postgres_url, s3_artifacts)
    client.set_policy(POLICY)
    _train(client)
    hook = client.add_webhook(f"{receiver.url}/hooks", kinds=["review_overdue"])
    servers.start()
    servers.start()
    monkeypatch.setenv("CLEW_USER", "bob")
    client.set_review_due("credit", PAST_DAY, "backlog from the 2025 inventory")
    _wait_for_delivery(receiver, 60)
    time.sleep(2)  # many more ticks of both servers' review and webhook threads
    [event] = _overdue(client)
    assert event.actor == REVIEW_ACTOR and f"was due {PAST_DAY}" in event.comment
    [delivered] = receiver.received
    document = receiver_check(hook["secret"], delivered)
    assert document["event"]["id"] == event.id and document["event"]["kind"] == "review_overdue"
    servers.stop()

    servers.start()  # a restart finds the event in the store
    time.sleep(2)
    servers.stop()
    assert [e.id for e in _overdue(client)] == [event.id]
    assert len(receiver.received) == 1
    assert client.review_status("credit").state == "overdue"
    client.close()
