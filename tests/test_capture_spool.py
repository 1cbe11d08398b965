"""The capture spool against a real in-process server: re-sent batches are stored once, refused
and unreadable ones are set aside and said so, and its settings are checked.

The server-killing tests are in tests/test_capture_outage.py; here the spool's files are put
in place the way a client that lost the server's answer would have left them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from capture_support import iris, register_iris_remotely
from fastapi.testclient import TestClient
from server_fixtures import RunningServer, serve, server, server_store  # noqa: F401

import clew
from clew.client.capture_spool import SUFFIX, CaptureSpool, open_spool
from clew.client.remote_capture import ARROW_STREAM, encode, remote_rows
from clew.client.serving import create_inference_app
from clew.domain import ids
from clew.domain.captures import Call, CaptureTarget
from clew.errors import InvalidInputError
from clew.service import capture_verification


@pytest.fixture
def remote(server: RunningServer) -> Iterator[clew.Client]:  # noqa: F811
    client = clew.connect(server.url, token=server.user("alice"))
    yield client
    client.close()


def _iris_call(remote: clew.Client, version: int = 1) -> tuple[CaptureTarget, Call]:
    model = register_iris_remotely(remote)
    v = model.version
    target = CaptureTarget(v.id, v.name, version, v.digest)
    features, _ = iris()
    return target, Call(ids.new_id(), 1_700_000_000_000, 10, np.arange(10), features[:10])


def _spool(server: RunningServer) -> CaptureSpool:  # noqa: F811
    """The spool the client of ``server`` uses here (``CLEW_CAPTURE_SPOOL``, set by conftest)."""
    return open_spool(server.url)


def test_a_spooled_batch_the_server_already_stored_is_acknowledged_and_stored_once(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
) -> None:
    target, call = _iris_call(remote)
    batch_id = ids.new_id()
    http = server.http(server.tokens["alice"])
    stored = http.post(
        "/api/v1/models/iris/versions/1/captures",
        content=encode(target, [call]),
        params={"batch": batch_id},
        headers={"Content-Type": ARROW_STREAM},
    )
    assert stored.status_code == 201, stored.text
    # The answer was lost on the way back: the client spooled the batch it had posted.
    assert _spool(server).put(target, batch_id, remote_rows(target, [call]), 0)

    result = remote.flush_captures(timeout=30)
    assert result.complete and result.pending == 0 and result["captured"] == 10, result
    assert [batch.id for batch in capture_verification.all_batches(server.store)] == [batch_id]
    assert not list(_spool(server).directory.glob(f"*{SUFFIX}"))
    assert remote.get_prediction(f"{call.call_id}.3").verified


def test_a_spooled_batch_the_server_refuses_is_set_aside_counted_and_logged(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    target, call = _iris_call(remote, version=7)  # no version 7: the server answers 404
    batch_id = ids.new_id()
    assert _spool(server).put(target, batch_id, remote_rows(target, [call]), 0)

    with caplog.at_level(logging.WARNING, logger="clew.capture"):
        result = remote.flush_captures(timeout=30)
    assert result.complete and result.pending == 0
    assert result["failed"] == 10 and result["captured"] == 0 and result["dropped"] == 0
    assert capture_verification.all_batches(server.store) == []
    [aside] = _spool(server).directory.glob("*.refused")
    assert aside.name == f"{batch_id}.refused"
    assert f"refused spooled capture batch {batch_id}" in caplog.text
    assert str(aside) in caplog.text


def test_an_unreadable_spool_file_is_set_aside_with_one_clear_line(
    remote: clew.Client,
    server: RunningServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = _spool(server).directory
    directory.mkdir(parents=True)
    torn = directory / f"{ids.new_id()}{SUFFIX}"
    torn.write_bytes(b"ARROW1 not really")
    with caplog.at_level(logging.WARNING, logger="clew.capture"):
        result = remote.flush_captures(timeout=10)
    assert result.complete and result.pending == 0
    assert not torn.exists() and torn.with_suffix(".refused").exists()
    assert f"capture spool file {torn} cannot be read" in caplog.text


def test_the_inference_endpoint_reports_pending_captures_as_metrics(tmp_path: Path) -> None:
    lifetime = serve(*server_store(tmp_path, "short-lived"))
    running = next(lifetime)
    client = clew.connect(running.url, token=running.user("alice"))
    try:
        app = TestClient(create_inference_app(register_iris_remotely(client)))
        lifetime.close()  # the server stops; the endpoint goes on predicting
        answer = app.post("/predict", json={"inputs": iris()[0][:5].tolist()})
        assert answer.status_code == 200
        assert client.flush_captures(timeout=5).pending == 5  # the SDK's retries last ~3 s
        metrics = app.get("/metrics").text
        assert "clew_capture_pending_rows 5\n" in metrics
        assert "clew_capture_pending_batches 1\n" in metrics
        assert 'clew_capture_rows_total{outcome="dropped"} 0\n' in metrics
        assert app.get("/health").json()["capture"]["pending"] == 5
    finally:
        client.close()


def test_an_unwritable_spool_counts_failed_rows_with_one_clear_sentence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_directory = tmp_path / "spool-is-a-file"
    not_a_directory.write_text("")
    lifetime = serve(*server_store(tmp_path, "short-lived"))
    running = next(lifetime)
    client = clew.connect(running.url, token=running.user("alice"))
    try:
        client.configure_capture(spool=not_a_directory)
        model = register_iris_remotely(client)
        lifetime.close()
        with caplog.at_level(logging.WARNING, logger="clew.capture"):
            model.predict(iris()[0][:5])
            result = client.flush_captures(timeout=5)  # the SDK's retries last ~3 s
        assert result["failed"] == 5 and result.pending == 0 and result["dropped"] == 0
        assert f"to the capture spool {not_a_directory}" in (result["last_error"] or "")
        assert "make that directory writable" in caplog.text
    finally:
        client.close()


def test_spool_options_after_the_spool_opened_are_refused(remote: clew.Client) -> None:
    remote.capture_stats()  # opens the writer and its spool
    with pytest.raises(InvalidInputError, match="capture spool of this client is already open"):
        remote.configure_capture(spool_max_batches=5)
    remote.configure_capture(flush_seconds=0.5)  # batching can still change


@pytest.mark.parametrize(
    "option", ["spool_max_bytes", "spool_max_batches", "retry_seconds"], ids=str
)
def test_spool_bounds_must_be_positive(option: str, tmp_path: Path) -> None:
    client = clew.Client(str(tmp_path / "store"))
    try:
        with pytest.raises(InvalidInputError, match=f"{option} 0 must be a positive number"):
            client.configure_capture(**{option: 0})
    finally:
        client.close()
