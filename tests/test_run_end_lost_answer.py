"""A run end the server committed but whose every answer was lost: the caller's next ``end()``
gets the first answer replayed (the request, so its idempotency key, is the same), nothing is
written twice, and ending it with another status is still refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import run_uvicorn, server_store
from sqlalchemy import select

import clew
from clew.errors import ClewError, RunFinishedError
from clew.server.app import create_app
from clew.service import accounts, audit
from clew.store import schema
from clew.store.location import Store


class LostEnds:
    """The real clew app, but while ``losing`` the answers to run ends never arrive: the app
    runs (and commits) and the client gets a 503 instead, on every retry too."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.losing = False
        self.lost = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.losing and scope["type"] == "http" and scope["path"].endswith("/end"):

            async def drop(_message: Any) -> None:
                return None

            await self.app(scope, receive, drop)
            self.lost += 1
            body = json.dumps({"code": "store_unavailable", "message": "the answer was lost."})
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[tuple[LostEnds, Store, clew.Client]]:
    store, _root = server_store(tmp_path)
    app = LostEnds(create_app(store))
    accounts.create_user(store, "alice", "contributor", actor="test-admin")
    token = accounts.create_token(store, "alice", actor="test-admin").secret
    try:
        for url in run_uvicorn(app):
            client = clew.Client(url, token=token)
            yield app, store, client
            client.close()
    finally:
        store.close()


def _state(store: Store, run_id: str) -> tuple[str, list[int], int]:
    """The stored status, the steps of ``loss`` and how many ``run.end`` entries were audited."""
    with store.db.read() as connection:
        status = connection.execute(
            select(schema.runs.c.status).where(schema.runs.c.id == run_id)
        ).scalar_one()
        steps = connection.execute(
            select(schema.metrics.c.step).where(schema.metrics.c.run_id == run_id)
        ).scalars()
        ordered = sorted(steps)
    ends = [e for e in audit.entries(store, f"run:{run_id}") if e.action == "run.end"]
    return status, ordered, len(ends)


def _end_losing_every_answer(app: LostEnds, run: clew.ActiveRun, status: str) -> None:
    app.losing = True
    with pytest.raises(ClewError, match="the answer was lost"):
        run.end(status)
    app.losing = False
    assert app.lost > 1, "the client should have retried the lost end"


def test_ending_again_after_every_answer_was_lost_succeeds_and_writes_once(
    lossy: tuple[LostEnds, Store, clew.Client],
) -> None:
    app, store, client = lossy
    run = client.start_run("lossy", "end")
    for step in range(20):
        run.log_metric("loss", 1 / (step + 1), step=step)
    _end_losing_every_answer(app, run, "FINISHED")
    assert _state(store, run.id) == ("FINISHED", list(range(20)), 1), "the server committed"

    run.end()  # the old client drew a new key here and was told the run had already ended

    assert run.info.status == "FINISHED"
    assert _state(store, run.id) == ("FINISHED", list(range(20)), 1)
    assert client.get_run(run.id).status == "FINISHED"


def test_ending_with_another_status_after_a_lost_answer_is_refused(
    lossy: tuple[LostEnds, Store, clew.Client],
) -> None:
    app, store, client = lossy
    run = client.start_run("lossy", "end")
    run.log_metric("loss", 0.5, step=0)
    _end_losing_every_answer(app, run, "FINISHED")

    with pytest.raises(RunFinishedError, match=r"already ended \(FINISHED\), so it can not end"):
        run.end("FAILED")
    assert _state(store, run.id) == ("FINISHED", [0], 1)
    run.end("FINISHED")  # the request that was committed is still answered
    assert run.info.status == "FINISHED"
    assert _state(store, run.id) == ("FINISHED", [0], 1)
