"""No response tells a caller where the server keeps its data: every error shape the server
produces (each 4xx code, 500, and 503 with the database down) is walked, and none may name the
store's directory, blob location, database URL or any part of it, or the server's host name.
The detail goes to the server log under the request's id instead."""

from __future__ import annotations

import hashlib
import html
import logging
import shutil
import socket
from pathlib import Path

import httpx
import pytest
from capture_support import iris, register_iris_remotely
from server_fixtures import RunningServer, serve, server_store
from sqlalchemy.engine import make_url

import clew
from clew.server.arrow_bodies import ARROW_STREAM
from clew.store.blobs import LocalBlobStore
from clew.store.location import Store, open_store

MISSING = "sha256:" + "0" * 64
ARROW = {"Content-Type": ARROW_STREAM}


def internal_names(store: Store) -> list[str]:
    """Everything about where ``store`` lives that a caller must never read."""
    names = [str(store.home), str(store.home.resolve()), store.uri, socket.gethostname()]
    blobs = store.blobs
    names.append(str(blobs.root) if isinstance(blobs, LocalBlobStore) else blobs.url)
    if store.db.dialect == "postgresql":
        url = make_url(store.db.url)
        names += [url.username or "", url.host or "", str(url.port or ""), url.database or ""]
    return [name for name in names if len(name) >= 4]


def assert_discloses_nothing(response: httpx.Response, store: Store) -> None:
    for name in internal_names(store):
        assert name not in response.text, f"{response.status_code} names {name!r}: {response.text}"
    if response.headers.get("content-type", "").startswith("application/json"):
        assert response.json()["request_id"]


def error_responses(running: RunningServer) -> list[httpx.Response]:
    """One response of every error shape a caller can cause."""
    bob, viewer = running.user("bob"), running.user("vera", role="viewer")
    with running.http(bob) as client, running.http(viewer) as reader:
        run_id = client.post("/api/v1/runs", json={"name": "r"}).json()["id"]
        answers = [
            client.post(f"/api/v1/runs/{run_id}/metrics", content=b"junk", headers=ARROW),
            httpx.get(f"{running.url}/api/v1/whoami", headers={"Authorization": "Bearer bogus"}),
            reader.post("/api/v1/runs", json={"name": "r"}),
            client.get(f"/api/v1/blobs/{MISSING}"),
            client.get(f"/api/v1/blobs/{MISSING}/size"),
            client.get("/api/v1/no-such-route"),
            client.get(f"/api/v1/runs/{'0' * 26}"),
            client.delete(f"/api/v1/runs/{run_id}"),
            client.post("/api/v1/runs", json={"name": "x" * 5000}),
            client.post(
                "/api/v1/models/m/versions/1/captures",
                params={"batch": "0" * 26},
                content=b"x",
                headers={"Content-Type": "text/plain"},
            ),
            client.post("/api/v1/runs", json={"name": 5}),
            reader.get(f"/ui/runs/{'0' * 26}"),
        ]
    statuses = {answer.status_code for answer in answers}
    assert {400, 401, 403, 404, 405, 413, 415, 422} <= statuses, statuses
    return answers


def test_no_error_names_where_the_server_keeps_its_data(tmp_path: Path) -> None:
    store, root = server_store(tmp_path)
    for running in serve(store, root, max_json_bytes=4096):
        for answer in error_responses(running):
            assert_discloses_nothing(answer, store)


@pytest.mark.sqlite_only
def test_an_internal_error_names_nothing_and_the_log_has_the_detail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, root = server_store(tmp_path)
    content = b"weights"
    digest = store.blobs.put_bytes(content).digest
    assert digest == "sha256:" + hashlib.sha256(content).hexdigest()
    blob = store.blobs.path_for(digest)
    blob.unlink()
    blob.mkdir()  # the blob's file is now a directory: reading it fails unexpectedly
    for running in serve(store, root):
        with running.http(running.user("bob")) as client, caplog.at_level(logging.ERROR):
            answer = client.get(f"/api/v1/blobs/{digest}")
        assert answer.status_code == 500
        assert answer.json()["code"] == "internal_error"
        assert_discloses_nothing(answer, store)
        request_id = answer.json()["request_id"]
        assert any(request_id in record.getMessage() for record in caplog.records)


@pytest.mark.postgres
def test_with_the_database_down_a_caller_learns_nothing_about_it(
    tmp_path: Path, own_postgres: object, caplog: pytest.LogCaptureFixture
) -> None:
    own_postgres.execute("CREATE DATABASE clew_hidden")  # type: ignore[attr-defined]
    store = open_store(own_postgres.url("clew_hidden"), str(tmp_path / "blobs"))  # type: ignore[attr-defined]
    for running in serve(store, tmp_path):
        token = running.user("bob")
        own_postgres.stop()  # type: ignore[attr-defined]
        try:
            with caplog.at_level(logging.ERROR):
                answers = [
                    httpx.get(
                        f"{running.url}/api/v1/whoami", headers={"Authorization": f"Bearer {bogus}"}
                    )
                    for bogus in ("bogus", token)
                ]
        finally:
            own_postgres.start()  # type: ignore[attr-defined]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "store_unavailable"
            assert "try again" in answer.json()["message"]
            assert_discloses_nothing(answer, store)
            request_id = answer.json()["request_id"]
            logged = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
            assert any("clew_hidden" in message for message in logged), logged
    shutil.rmtree(tmp_path / "blobs", ignore_errors=True)


@pytest.mark.sqlite_only
def test_a_missing_capture_file_names_no_path_in_the_api_or_the_ui(tmp_path: Path) -> None:
    store, root = server_store(tmp_path)
    for running in serve(store, root):
        client = clew.connect(running.url, token=running.user("alice"))
        model = register_iris_remotely(client)
        _, prediction_ids = model.predict_with_ids(iris()[0][:3])
        client.flush_captures()
        client.close()
        for parquet in store.captures.rglob("*.parquet"):
            parquet.unlink()
        with running.http(running.user("vera", role="viewer")) as reader:
            answers = [
                reader.get(f"/api/v1/predictions/{prediction_ids[0]}"),
                reader.get(f"/ui/predictions/{prediction_ids[0]}"),
            ]
        for answer in answers:
            assert answer.status_code == 404, answer.text
            assert "the server's storage" in html.unescape(answer.text)
            assert_discloses_nothing(answer, store)
