"""The metrics background writer across a server blip: several threads log into their own
runs through a real ``clew server`` while metric posts fail for a while (a replica being
redeployed); every point is written exactly once and ``end()`` raises nothing, because a
background failure whose points were written since is not reported later.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from server_fixtures import run_uvicorn, server_store
from sqlalchemy import select

import clew
from clew.server.app import create_app
from clew.service import accounts
from clew.store import schema
from clew.store.location import Store

RUNS = 4
POINTS = 2_000
BOUND_S = 60


class MetricBlip:
    """The real clew app behind a switch that refuses metric posts with a 500 while ``down``
    (not retried by the client, so the background writer sees the failure at once)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.down = False
        self.refused = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.down and scope["type"] == "http" and scope["path"].endswith("/metrics"):
            self.refused.set()
            await _answer(send, 500, "internal_error", "the replica is being redeployed.")
            return
        await self.app(scope, receive, send)


async def _answer(send: Any, status: int, code: str, message: str) -> None:
    """Answer in the clew server's JSON error shape."""
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _steps(store: Store, run_id: str) -> list[int]:
    table = schema.metrics
    query = select(table.c.step).where(table.c.run_id == run_id, table.c.key == "loss")
    with store.db.read() as connection:
        return sorted(connection.execute(query).scalars())


def _status(store: Store, run_id: str) -> str:
    with store.db.read() as connection:
        return connection.execute(
            select(schema.runs.c.status).where(schema.runs.c.id == run_id)
        ).scalar_one()


def test_points_logged_across_a_server_blip_are_written_once_and_end_raises_nothing(
    tmp_path: Path,
) -> None:
    store, _root = server_store(tmp_path)
    blip = MetricBlip(create_app(store))
    accounts.create_user(store, "alice", "contributor", actor="test-admin")
    token = accounts.create_token(store, "alice", actor="test-admin").secret
    phase = threading.Barrier(RUNS + 1, timeout=BOUND_S)
    failures: list[BaseException] = []
    run_ids: list[str] = []

    def train(client: clew.Client, index: int) -> None:
        try:
            run = client.start_run("blip", f"run-{index}")
            run_ids.append(run.id)
            for step in range(POINTS // 2):
                run.log_metric("loss", 1 / (step + 1))
            run.flush()
            phase.wait()  # the main thread takes metric posts down
            phase.wait()
            for step in range(POINTS // 2, POINTS):
                run.log_metric("loss", 1 / (step + 1))
            phase.wait()  # the background writer fails on them; posts come back up
            phase.wait()
            run.end()
        except BaseException as error:
            failures.append(error)
            phase.abort()

    try:
        for url in run_uvicorn(blip):
            client = clew.connect(url, token=token)
            threads = [
                threading.Thread(target=train, args=(client, index)) for index in range(RUNS)
            ]
            for thread in threads:
                thread.start()
            phase.wait()
            blip.down = True
            phase.wait()
            phase.wait()
            assert blip.refused.wait(BOUND_S), "the background writer never tried during the blip"
            blip.down = False
            phase.wait()
            for thread in threads:
                thread.join(BOUND_S)
            client.close()
            assert failures == []
            assert len(run_ids) == RUNS
            for run_id in run_ids:
                assert _steps(store, run_id) == list(range(POINTS))
                assert _status(store, run_id) == "FINISHED"
    finally:
        store.close()


class LostAnswers:
    """The real clew app, but while ``losing`` the answers to metric posts never arrive: the
    app runs (and commits) and the client gets a 503 instead, on every retry too."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.losing = False
        self.lost = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.losing and scope["type"] == "http" and scope["path"].endswith("/metrics"):

            async def drop(_message: Any) -> None:
                return None

            await self.app(scope, receive, drop)
            self.lost += 1
            await _answer(send, 503, "store_unavailable", "the answer was lost.")
            return
        await self.app(scope, receive, send)


def test_a_batch_committed_but_never_acknowledged_is_not_written_twice(tmp_path: Path) -> None:
    store, _root = server_store(tmp_path)
    lossy = LostAnswers(create_app(store))
    accounts.create_user(store, "alice", "contributor", actor="test-admin")
    token = accounts.create_token(store, "alice", actor="test-admin").secret
    try:
        for url in run_uvicorn(lossy):
            client = clew.connect(url, token=token)
            run = client.start_run("lossy", "run")
            for step in range(100):
                run.log_metric("loss", 1 / (step + 1))
            lossy.losing = True
            try:
                run.flush()
            except clew.errors.ClewError:
                pass
            else:
                raise AssertionError("flush() should have failed while every answer was lost")
            assert lossy.lost > 1, "the client should have retried the lost post"
            assert _steps(store, run.id) == list(range(100)), "the server committed the batch"
            lossy.losing = False
            for step in range(100, 150):
                run.log_metric("loss", 1 / (step + 1))
            run.end()
            client.close()
            assert _steps(store, run.id) == list(range(150))
            assert _status(store, run.id) == "FINISHED"
    finally:
        store.close()
