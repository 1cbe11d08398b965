"""Delivering webhooks: retries with backoff, giving up, redirects, forged events, leases, several
deliverers on one store (threads, the server's start-up hook), admins only, and the CLI.

Every test sends to a real ``http.server`` receiver (tests/test_webhooks.py) on 127.0.0.1, which
the test's allow-list lets clew reach; the services are the real ones over the test's store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from server_fixtures import RunningServer
from tamper import execute_sql
from test_registry import train
from test_webhooks import ALLOW_ENV, Receiver, receiver_check, run_receiver
from typer.testing import CliRunner

import clew
from clew.cli.main import app as cli
from clew.domain.webhooks import Backoff
from clew.server.app import create_app
from clew.server.deliverer import BackgroundDeliverer
from clew.service import registry
from clew.service.runs import now_ms
from clew.service.webhooks import WebhookService
from clew.store.location import Store, open_store

pytest_plugins = ("server_fixtures",)
runner = CliRunner(env={"COLUMNS": "200"})
IMPATIENT = Backoff(base_s=0, max_attempts=3)  # every retry is due at once


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1, which this test's allow-list (and only it) lets clew reach."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1/32")
    yield from run_receiver()


def registered(client: clew.Client, versions: int = 1) -> None:
    _, artifact = train(client)
    for _ in range(versions):
        client.register_model(artifact, "iris")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait (at most a minute, on a loaded machine) for background work; not a timing test."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_failing_receiver_is_retried_then_given_up_on(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    client.add_webhook(receiver.url)
    registered(client)
    receiver.answers = [(500, {}), (503, {}), (500, {})]
    report = WebhookService(store, backoff=IMPATIENT).deliver()
    assert report.to_dict() == {"queued": 1, "delivered": 0, "retrying": 2, "gave_up": 1}
    attempts = [item.headers["Clew-Delivery-Attempt"] for item in receiver.received]
    assert attempts == ["1", "2", "3"]
    assert len({item.headers["Clew-Delivery"] for item in receiver.received}) == 1
    (row,) = client.webhook_deliveries().to_dict("records")
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 3, 500)
    assert row["last_error"] == "answered 500" and row["next_attempt_ms"] is None


def test_a_receiver_back_after_a_failure_gets_the_delivery_once(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    added = client.add_webhook(receiver.url)
    registered(client)
    receiver.answers = [(502, {})]
    report = WebhookService(store, backoff=IMPATIENT).deliver()
    assert (report.delivered, report.retrying) == (1, 1)
    first, second = receiver.received
    assert first.body == second.body and receiver_check(added["secret"], second)
    assert client.webhook_deliveries(status="delivered")["attempts"].tolist() == [2]


def test_a_failed_attempt_waits_for_its_backoff(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    client.add_webhook(receiver.url)
    registered(client)
    receiver.answers = [(500, {})]
    service = WebhookService(store, backoff=Backoff(base_s=60, max_attempts=5))
    assert service.deliver().retrying == 1
    assert service.deliver().to_dict() == {"queued": 0, "delivered": 0, "retrying": 0, "gave_up": 0}
    assert len(receiver.received) == 1
    (row,) = client.webhook_deliveries(status="pending").to_dict("records")
    assert now_ms() + 25_000 <= row["next_attempt_ms"] <= now_ms() + 61_000


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(base_s=10, cap_s=100, max_attempts=9)
    for attempts, ceiling_s in ((1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (8, 100)):
        delays = {backoff.delay_ms(attempts) for _ in range(50)}
        assert all(ceiling_s * 500 <= delay <= ceiling_s * 1000 for delay in delays)
        assert len(delays) > 1  # jittered, not one fixed instant for every deliverer


def test_a_redirect_is_never_followed(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    client.add_webhook(f"{receiver.url}/hook")
    registered(client)
    receiver.answers = [(307, {"Location": f"{receiver.url}/elsewhere"})] * 3
    report = WebhookService(store, backoff=IMPATIENT).deliver()
    assert report.gave_up == 1
    assert {item.path for item in receiver.received} == {"/hook"}
    (row,) = client.webhook_deliveries().to_dict("records")
    assert row["last_error"] == "answered 307, a redirect, which clew never follows"


@pytest.mark.tampers
def test_an_event_forged_in_the_database_is_never_sent(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    client.add_webhook(receiver.url)
    registered(client)
    execute_sql(
        store,
        "INSERT INTO registry_events (id, model_id, version, kind, actor, time_ms, comment, "
        "evidence, seq) SELECT '01JFORGEDAPPROVAL000000000', model_id, version, 'approved', "
        "'mallory', time_ms, 'trust me', '{}', seq + 1 FROM registry_events",
    )
    report = WebhookService(store).deliver()
    assert (report.queued, report.delivered) == (2, 1)
    assert [event["kind"] for event in receiver.events()] == ["registered"]
    (forged,) = client.webhook_deliveries(status="failed").to_dict("records")
    assert forged["event_id"] == "01JFORGEDAPPROVAL000000000" and forged["attempts"] == 0
    assert "audit chain does not vouch for this event" in forged["last_error"]


def test_a_deliverer_dying_mid_send_leaves_the_delivery_to_another(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    """The first deliverer leases the delivery and dies before sending or recording it; once
    its lease has run out another sends it, same delivery id, as the second attempt."""
    client.add_webhook(receiver.url)
    registered(client)
    dying = WebhookService(store)
    dying.queue_events()
    assert len(dying._claim(10)) == 1
    survivor = WebhookService(store)
    assert survivor.deliver().delivered == 0  # still leased
    execute_sql(store, "UPDATE webhook_deliveries SET lease_until_ms = :past", past=now_ms() - 1)
    assert survivor.deliver().delivered == 1
    (item,) = receiver.received
    assert item.headers["Clew-Delivery-Attempt"] == "2"
    assert item.headers["Idempotency-Key"] == client.webhook_deliveries()["id"][0]


def test_deliverers_racing_on_one_store_send_each_delivery_once(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    for _ in range(3):
        client.add_webhook(receiver.url)
    registered(client, versions=4)
    stores = [open_store(store.uri if "://" in store.uri else store.home) for _ in range(4)]
    errors: list[BaseException] = []

    def deliver(opened: Store) -> None:
        try:
            WebhookService(opened).deliver()
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(opened,)) for opened in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for opened in stores:
        opened.close()
    assert errors == []
    ids = [item.headers["Clew-Delivery"] for item in receiver.received]
    assert len(ids) == 12 == len(set(ids))


def test_two_servers_deliver_each_event_once(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    """Two replicas on one store: one app started through its lifespan (the start-up hook
    ``clew server`` uses), one bare deliverer; every delivery arrives exactly once."""
    client.add_webhook(receiver.url)
    other = open_store(store.uri if "://" in store.uri else store.home)
    replica = BackgroundDeliverer(WebhookService(other), interval_s=0.02)
    app = create_app(other, deliver_webhooks_every_s=0.02)
    replica.start()
    try:
        with TestClient(app):
            registered(client, versions=3)
            wait_for(lambda: len(receiver.received) >= 3, "three deliveries")
    finally:
        replica.stop()
        other.close()
    ids = [item.headers["Clew-Delivery"] for item in receiver.received]
    assert len(ids) == 3 == len(set(ids))
    assert set(client.webhook_deliveries()["status"]) == {"delivered"}


def test_only_admins_manage_webhooks_on_a_server(server: RunningServer, receiver: Receiver) -> None:
    admin, bob = server.user("admin", "admin"), server.user("bob", "approver")
    with server.http(bob) as http:
        for method, path in (
            ("POST", "/api/v1/webhooks"),
            ("GET", "/api/v1/webhooks"),
            ("GET", "/api/v1/webhooks/deliveries"),
            ("POST", "/api/v1/webhooks/deliver"),
            ("DELETE", "/api/v1/webhooks/01JANYWEBHOOK0000000000000"),
        ):
            answer = http.request(method, path, json={"url": receiver.url})
            assert answer.status_code == 403, (method, path)
    with server.http(admin) as http:
        refused = http.post("/api/v1/webhooks", json={"url": "http://[::ffff:10.0.0.1]/"})
        assert refused.status_code == 400 and "IPv4-mapped 10.0.0.1" in refused.json()["message"]
        added = http.post("/api/v1/webhooks", json={"url": receiver.url, "kinds": ["approved"]})
        assert added.status_code == 201 and added.json()["secret"].startswith("whsec_")
        listed = http.get("/api/v1/webhooks").json()
        assert [row["id"] for row in listed] == [added.json()["id"]] and "secret" not in listed[0]


def test_the_cli_adds_lists_delivers_and_removes(client: clew.Client, receiver: Receiver) -> None:
    added = runner.invoke(cli, ["webhooks", "add", receiver.url, "-k", "registered", "-f", "json"])
    assert added.exit_code == 0, added.output
    secret, webhook_id = json.loads(added.output)["secret"], json.loads(added.output)["id"]
    registered(client)
    delivered = runner.invoke(cli, ["webhooks", "deliver", "--format", "json"])
    assert json.loads(delivered.output)["delivered"] == 1
    assert receiver_check(secret, receiver.received[0])["event"]["kind"] == "registered"
    log = json.loads(runner.invoke(cli, ["webhooks", "deliveries", "-f", "json"]).output)
    assert [row["status"] for row in log["deliveries"]] == ["delivered"]
    table = runner.invoke(cli, ["webhooks", "list"])
    assert webhook_id in table.output and receiver.url in table.output
    assert secret not in table.output
    removed = runner.invoke(cli, ["webhooks", "remove", webhook_id])
    assert removed.exit_code == 0 and f"removed webhook {webhook_id}" in removed.output
    listed = json.loads(runner.invoke(cli, ["webhooks", "list", "-f", "json"]).output)
    assert listed == {"webhooks": []}


def test_the_cli_refuses_a_private_url_in_one_line(client: clew.Client) -> None:
    refused = runner.invoke(cli, ["webhooks", "add", "http://2130706433:9/hook"])
    assert refused.exit_code == 1
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: webhook URL http://2130706433:9/hook")
    assert "Traceback" not in refused.output and clew.webhooks(removed=True).empty


def test_a_webhook_whose_address_turns_private_is_refused_at_delivery(
    client: clew.Client,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    receiver: Receiver,
) -> None:
    """The subscription was allowed; by delivery time the allow-list no longer has it (as if
    the name now pointed inside): the delivery is refused at the connect and logged why."""
    client.add_webhook(receiver.url)
    monkeypatch.delenv(ALLOW_ENV)
    registered(client)
    report = WebhookService(store).deliver()
    assert (report.delivered, report.retrying) == (0, 1) and receiver.received == []
    (row,) = client.webhook_deliveries().to_dict("records")
    assert "127.0.0.1, a loopback address" in row["last_error"]
    assert row["last_status_code"] is None and row["status"] == "pending"


def test_an_event_kind_clew_adds_later_is_delivered_too(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    """Monitoring writes kinds such as ``violation`` through the registry's own event append;
    a subscription that names that kind (or none) receives it without knowing it in advance."""
    client.add_webhook(receiver.url, kinds=["violation"])
    registered(client)
    with store.db.write() as connection:
        model = registry.get_model_row(connection, name="iris")
        registry.append_event(
            connection, model.id, "iris", 1, "violation", "monitor", evidence={"psi": 0.31}
        )
    assert WebhookService(store).deliver().delivered == 1
    (event,) = receiver.events()
    assert (event["kind"], event["version"], event["evidence"]) == ("violation", 1, {"psi": 0.31})
