"""Webhooks through the SDK, on every backend: registry events reach a real receiver, signed.

The receiver is a real ``http.server`` on 127.0.0.1, which clew refuses to call unless told:
each test that delivers allows exactly that address through ``CLEW_WEBHOOK_ALLOWED_NETWORKS``
(the test's allow-list; the in-process test server reads the same environment). Signatures are
checked from the receiver's side with nothing but ``hmac``, as a receiver written in any
language would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from server_fixtures import AsUser
from test_registry import train

import clew
from clew.errors import ConflictError, InvalidInputError, NotFoundError
from clew.service import audit
from clew.store.location import Store

ALLOW_ENV = "CLEW_WEBHOOK_ALLOWED_NETWORKS"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A webhook receiver: records every request; answers ``answers`` in turn (then 200)."""

    url: str
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            return self.answers.pop(0) if self.answers else (200, {})

    def events(self) -> list[dict[str, Any]]:
        return [item.document["event"] for item in self.received]


def run_receiver() -> Iterator[Receiver]:
    """Serve a ``Receiver`` on a free 127.0.0.1 port until the generator is closed."""
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.received.append(Received(self.path, dict(self.headers.items()), body))
            status, headers = state.answer()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1, which this test's allow-list (and only it) lets clew reach."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1/32")
    yield from run_receiver()


def receiver_check(secret: str, item: Received) -> dict[str, Any]:
    """What a receiver does: recompute HMAC-SHA256 over "<t>.<raw body>" and compare."""
    fields = dict(part.split("=", 1) for part in item.headers["Clew-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), fields["t"].encode() + b"." + item.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])
    return item.document


def approved_and_promoted(client: clew.Client, as_user: AsUser) -> clew.Client:
    """iris/1 registered by alice, approved by bob, promoted to production by bob."""
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    bob = as_user("bob")
    bob.approve("iris/1", "validated")
    bob.promote("iris/1", "production", "launch")
    return bob


def test_registry_events_reach_the_receiver_signed_in_order(
    client: clew.Client, as_user: AsUser, receiver: Receiver
) -> None:
    added = client.add_webhook(f"{receiver.url}/hooks/clew")
    assert added["secret"].startswith("whsec_") and added["model"] is None
    approved_and_promoted(client, as_user)
    report = as_user("alice").deliver_webhooks()
    assert report == {"queued": 3, "delivered": 3, "retrying": 0, "gave_up": 0}
    kinds = [(event["kind"], event["version"], event["alias"]) for event in receiver.events()]
    assert kinds == [("registered", 1, None), ("approved", 1, None), ("alias_set", 1, "production")]
    for item in receiver.received:
        document = receiver_check(added["secret"], item)
        assert clew.verify_webhook(added["secret"], item.body, item.headers["Clew-Signature"])
        assert item.path == "/hooks/clew"
        assert item.headers["Idempotency-Key"] == item.headers["Clew-Delivery"]
        assert item.headers["Clew-Delivery"] == document["delivery"]
        assert item.headers["Clew-Event"] == document["event"]["kind"]
        assert document["subscription"] == added["id"]
    promoted = receiver.events()[-1]
    assert (promoted["model"], promoted["actor"], promoted["comment"]) == ("iris", "bob", "launch")
    log = client.webhook_deliveries()
    assert set(log["status"]) == {"delivered"} and set(log["last_status_code"]) == {200}
    assert list(log["kind"]) == ["alias_set", "approved", "registered"]  # newest first


def test_a_delivered_event_is_never_sent_again(
    client: clew.Client, as_user: AsUser, receiver: Receiver
) -> None:
    client.add_webhook(receiver.url)
    approved_and_promoted(client, as_user)
    client = as_user("alice")
    client.deliver_webhooks()
    again = client.deliver_webhooks()
    assert again == {"queued": 0, "delivered": 0, "retrying": 0, "gave_up": 0}
    ids = [item.headers["Clew-Delivery"] for item in receiver.received]
    assert len(ids) == 3 == len(set(ids))


def test_a_subscription_gets_its_model_and_kinds_only_from_its_creation_on(
    client: clew.Client, as_user: AsUser, receiver: Receiver
) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    client.register_model(artifact, "other")
    client.add_webhook(receiver.url, model="iris", kinds=["alias_set", "approved"])
    client.register_model(artifact, "iris")
    bob = as_user("bob")
    bob.approve("iris/2", "ok")
    bob.approve("other/1", "ok")
    bob.promote("iris/2", "production")
    as_user("alice").deliver_webhooks()
    seen = [(event["model"], event["kind"], event["version"]) for event in receiver.events()]
    assert seen == [("iris", "approved", 2), ("iris", "alias_set", 2)]


def test_a_rollback_an_archive_and_a_rejection_are_events_too(
    client: clew.Client, as_user: AsUser, receiver: Receiver
) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    client.register_model(artifact, "iris")
    client.add_webhook(receiver.url, kinds=["alias_rollback", "archived", "rejected"])
    bob = as_user("bob")
    bob.approve("iris/1", "ok")
    bob.approve("iris/2", "ok")
    bob.promote("iris/1", "production")
    bob.promote("iris/2", "production")
    bob.rollback("iris", "production", "bad recall")
    bob.reject("iris/2", "bad recall")
    bob.archive("iris/2", "retired")
    as_user("alice").deliver_webhooks()
    seen = [(event["kind"], event["version"]) for event in receiver.events()]
    assert seen == [("alias_rollback", 1), ("rejected", 2), ("archived", 2)]


def test_removing_a_subscription_cancels_what_it_had_not_sent(
    client: clew.Client, as_user: AsUser, receiver: Receiver, store: Store
) -> None:
    added = client.add_webhook(receiver.url)
    approved_and_promoted(client, as_user)
    client = as_user("alice")
    removed = client.remove_webhook(added["id"])
    assert removed["deleted_by"] == "alice" and "secret" not in removed
    assert client.deliver_webhooks()["delivered"] == 0
    assert receiver.received == []
    assert client.webhooks().empty
    assert list(client.webhooks(removed=True)["id"]) == [added["id"]]
    entries = audit.entries(store, f"webhook:{added['id']}")
    assert {entry.action for entry in entries} == {"webhook.add", "webhook.remove"}
    with pytest.raises(ConflictError, match="already removed"):
        client.remove_webhook(added["id"])
    with pytest.raises(NotFoundError, match="clew webhooks list"):
        client.remove_webhook("01JNOSUCHWEBHOOK000000000")


def test_the_secret_is_shown_once_and_never_stored_in_the_clear(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    added = client.add_webhook(receiver.url)
    listed = client.webhooks()
    assert "secret" not in listed.columns
    assert added["secret"] not in json.dumps(listed.to_dict("records"), default=str)
    with store.db.read() as connection:
        for table in ("webhook_subscriptions", "audit_log", "audit_records", "idempotency_keys"):
            rows = connection.exec_driver_sql(f"SELECT * FROM {table}").all()
            assert added["secret"] not in repr(rows), table


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "a loopback address"),
        ("http://2130706433/hook", "127.0.0.1, a loopback address"),
        ("http://0x7f.0.0.1/hook", "127.0.0.1, a loopback address"),
        ("http://127.1/hook", "127.0.0.1, a loopback address"),
        ("http://0/hook", "0.0.0.0, an unspecified address"),
        ("http://0177.0.0.1/hook", "does not parse"),
        ("http://[::ffff:127.0.0.1]/hook", "IPv4-mapped 127.0.0.1"),
        ("http://[::1]/hook", "a loopback address"),
        ("http://[fe80::1]/hook", "a link-local address"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://10.1.2.3/hook", "a private address"),
        ("http://localhost/hook", "a loopback address"),
        ("http://224.0.0.1/hook", "a multicast address"),
        ("http://240.0.0.1/hook", "a reserved address"),
        ("ftp://example.com/hook", "http:// or https://"),
        ("http://user:pw@example.com/hook", "user name or password"),
    ],
)
def test_a_url_to_a_private_address_is_one_sentence_and_writes_nothing(
    client: clew.Client, store: Store, url: str, why: str
) -> None:
    before = audit.entries(store, limit=1000)
    with pytest.raises(InvalidInputError, match=r"webhook URL|user name") as refused:
        client.add_webhook(url)
    message = str(refused.value)
    assert why in message and "\n" not in message and message.endswith(".")
    assert client.webhooks(removed=True).empty
    assert audit.entries(store, limit=1000) == before


def test_bad_kinds_and_unknown_models_write_nothing(
    client: clew.Client, store: Store, receiver: Receiver
) -> None:
    before = audit.entries(store, limit=1000)
    with pytest.raises(InvalidInputError, match="'Approved' is not a registry event kind"):
        client.add_webhook(receiver.url, kinds=["Approved"])
    with pytest.raises(NotFoundError, match="model 'nope' is not registered"):
        client.add_webhook(receiver.url, model="nope")
    with pytest.raises(InvalidInputError, match="delivery status 'done'"):
        client.webhook_deliveries(status="done")
    assert client.webhooks(removed=True).empty
    assert audit.entries(store, limit=1000) == before
