"""Captures survive a server outage: a real ``clew server`` process is killed mid-stream.

The client spools the batches the server did not take to a local directory and re-sends them
(under the batch ids they were first posted with) once the server is back, in the same process
or in the next one that uses the same spool. Every prediction must then be in the store exactly
once. The server runs on SQLite here and on PostgreSQL + S3 under
``CLEW_TEST_BACKEND=postgres-s3``; the outage (6 s) is longer than the ~3 s the SDK's own
retries last, which is where predictions used to be lost.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from capture_support import iris, register_iris_remotely
from conftest import BACKEND, free_port
from server_fixtures import serve, server_store
from test_reliability import ServerProcess

import clew
from clew.client.loaded_model import LoadedModel
from clew.service import accounts, capture_verification
from clew.store.location import open_store

OUTAGE_SECONDS = 6.0  # longer than the SDK's retries (~3 s), after which batches were dropped


@pytest.fixture
def killable(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, str]]:
    """A ``clew server`` subprocess on a fixed port over this test's store, and a token."""
    if BACKEND == "postgres-s3":
        uri = request.getfixturevalue("postgres_url")
        artifacts = request.getfixturevalue("s3_artifacts")
    else:
        uri, artifacts = str(tmp_path / "store"), str(tmp_path / "store" / "blobs")
    store = open_store(uri, artifacts, create=True)
    try:
        accounts.create_user(store, "streamer", "contributor", actor="test-admin")
        token = accounts.create_token(store, "streamer", actor="test-admin").secret
    finally:
        store.close()
    server = ServerProcess(uri, artifacts, free_port(), tmp_path / "server.log")
    server.start()
    try:
        yield server, token
    finally:
        server.stop()


def _predict(model: LoadedModel, start: int) -> list[str]:
    features, _ = iris()
    rows = features[start % 140 : start % 140 + 10]
    _, prediction_ids = model.predict_with_ids(rows)
    return list(prediction_ids)


def _stored_ids(server: ServerProcess) -> Counter[str]:
    """How often each prediction id occurs in the server's store (its files, read directly)."""
    store = open_store(server.uri, server.artifacts)
    try:
        found: Counter[str] = Counter()
        for batch in capture_verification.all_batches(store):
            found.update(store.capture_files.read_ids(batch.path).to_pylist())
        return found
    finally:
        store.close()


def test_predictions_made_while_the_server_was_killed_are_delivered_once_it_returns(
    killable: tuple[ServerProcess, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, token = killable
    client = clew.connect(server.url, token=token)
    try:
        client.configure_capture(flush_seconds=0.1, spool=tmp_path / "spool", retry_seconds=0.5)
        model = register_iris_remotely(client)
        made: list[str] = []
        for call in range(5):
            made += _predict(model, call * 10)
        assert client.flush_captures(timeout=60).pending == 0

        server.kill()
        deadline = time.monotonic() + OUTAGE_SECONDS
        with caplog.at_level(logging.WARNING, logger="clew.capture"):
            while time.monotonic() < deadline:
                made += _predict(model, len(made))
                time.sleep(0.05)
            during = client.flush_captures(timeout=5)
            assert not during.complete and during.pending > 0, during
            assert during["dropped"] == 0 and during["failed"] == 0
            assert "spool" in caplog.text and str(tmp_path / "spool") in caplog.text

            server.start()
            made += _predict(model, len(made))
            after = client.flush_captures(timeout=120)
            assert after.complete and after.pending == 0 and after.queued == 0, after
        assert "drained" in caplog.text
        stats = client.capture_stats()
        assert stats["captured"] == len(made) == stats["submitted"]
        assert stats["dropped"] == stats["failed"] == stats["pending"] == 0

        stored = _stored_ids(server)
        assert set(stored) == set(made), "a captured prediction is missing from the store"
        assert max(stored.values()) == 1, "a prediction was stored twice"
        for prediction_id in (made[0], made[len(made) // 2], made[-1]):
            assert client.get_prediction(prediction_id).verified
        middle = client.trace(made[len(made) // 2])
        assert middle.prediction_id == made[len(made) // 2] and middle.outcome != "failed"
    finally:
        client.close()


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import clew

    client = clew.connect(sys.argv[1], token=sys.argv[2])
    model = client.load_model("iris/1")
    print("loaded", flush=True)
    sys.stdin.readline()  # the test kills the server, then says go
    made = []
    for start in range(0, 100, 10):
        made += list(model.predict_with_ids(np.full((10, 4), start / 10.0))[1])
    print(json.dumps(made), flush=True)
    """
)


def test_a_process_that_exits_while_the_server_is_down_leaves_its_captures_to_the_next(
    killable: tuple[ServerProcess, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, token = killable
    spool = tmp_path / "shared-spool"
    monkeypatch.setenv("CLEW_CAPTURE_SPOOL", str(spool))
    registering = clew.connect(server.url, token=token)
    register_iris_remotely(registering)
    registering.close()

    script = tmp_path / "predict.py"
    script.write_text(SCRIPT)
    first = subprocess.Popen(
        [sys.executable, str(script), server.url, token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CLEW_CAPTURE_SPOOL": str(spool)},
    )
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline().strip() == "loaded", first.stderr and first.stderr.read()
    server.kill()
    first.stdin.write("go\n")
    first.stdin.flush()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    made = json.loads(out.strip().splitlines()[-1])
    assert len(made) == 100
    assert "wait in the capture spool" in err, err
    assert "Traceback" not in err, err

    server.start()
    assert _stored_ids(server) == Counter()
    later = clew.connect(server.url, token=token)  # a new process, the same spool directory
    try:
        result = later.flush_captures(timeout=120)
        assert result.complete and result.pending == 0, result
    finally:
        later.close()
    stored = _stored_ids(server)
    assert set(stored) == set(made) and max(stored.values()) == 1
    assert not list(spool.rglob("*.arrow")), "a delivered batch stayed in the spool"


def test_a_full_spool_drops_and_counts_what_it_cannot_keep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lifetime = serve(*server_store(tmp_path, "short-lived"))
    running = next(lifetime)
    client = clew.connect(running.url, token=running.user("alice"))
    try:
        client.configure_capture(spool=tmp_path / "small-spool", spool_max_batches=1)
        model = register_iris_remotely(client)
        lifetime.close()  # the server stops; the loaded model stays in this process
        with caplog.at_level(logging.WARNING, logger="clew.capture"):
            _predict(model, 0)
            first = client.flush_captures(timeout=8)  # the SDK's retries last ~3 s
            _predict(model, 10)
            second = client.flush_captures(timeout=1)
        assert first.pending == 10 and first["dropped"] == 0
        assert second.pending == 10 and second.pending_batches == 1
        assert second["dropped"] == 10 and second["failed"] == 0 and second["captured"] == 0
        assert "is full" in caplog.text and str(tmp_path / "small-spool") in caplog.text
        assert "spool_max_batches" in caplog.text
    finally:
        client.close()
