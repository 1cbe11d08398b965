"""Reads of governed artifacts are audited: who read which digest, when, and how.

A governed blob is a registered version's manifest or a file it lists (clew/service/reads.py).
Loading a version embedded appends one ``artifact.read.embedded`` entry; through a server each
download request appends ``artifact.read.stream`` (bytes relayed) or ``artifact.read.redirect``
(a presigned object-store URL handed out), and the request log line names the digest.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from server_fixtures import REMOTE, AsUser, RunningServer, serve
from sklearn.linear_model import LogisticRegression
from test_registry import iris_frame, train
from typer.testing import CliRunner

import clew
from clew.cli.server import server
from clew.domain.audit import AuditEntry
from clew.domain.records import ArtifactRecord
from clew.errors import StoreUnavailableError
from clew.server.routes.artifacts import PRESIGNED_ENV
from clew.service import audit
from clew.service.reads import AUDIT_READS_ENV, READ_ACTION
from clew.store.location import Store, open_store
from clew.store.object_store import PART_SIZE


def _reads(store: Store) -> list[AuditEntry]:
    return audit.entries(store, action=READ_ACTION, newest_first=False)


def _manifest(store: Store, digest: str) -> dict[str, str]:
    return store.blobs.read_manifest(digest)


def test_loading_a_registered_version_is_audited_with_reader_digest_and_how(
    client: clew.Client, store: Store, as_user: AsUser
) -> None:
    _, artifact = train(client)
    version = client.register_model(artifact, "iris")
    assert _reads(store) == []
    bob = as_user("bob", role="viewer")
    bob.load_model("iris/1")
    entries = _reads(store)
    assert entries and {entry.actor for entry in entries} == {"bob"}
    if REMOTE:
        files = set(_manifest(store, version.digest).values())
        assert {entry.target for entry in entries} == {version.digest, *files}
        assert {entry.action for entry in entries} == {READ_ACTION + "stream"}
    else:
        assert [(entry.target, entry.action) for entry in entries] == [
            (version.digest, READ_ACTION + "embedded")
        ]
    assert audit.verify_chain(store)[1] is None


def test_exporting_a_registered_model_is_audited_and_an_unregistered_one_is_not(
    client: clew.Client, store: Store, tmp_path: Path
) -> None:
    _, unregistered = train(client, model_name="draft")
    client.export_artifact(f"artifact:{unregistered.id}", tmp_path / "draft")
    assert _reads(store) == []
    _, artifact = train(client, max_iter=300)
    version = client.register_model(artifact, "iris")
    client.export_artifact(f"artifact:{artifact.id}", tmp_path / "model")
    assert version.digest in {entry.target for entry in _reads(store)}
    assert {entry.actor for entry in _reads(store)} == {"alice"}


def test_the_setting_audits_every_read_or_none(
    client: clew.Client, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    monkeypatch.setenv(AUDIT_READS_ENV, "off")
    client.load_model("iris/1")
    assert _reads(store) == []
    _, dataset = train(client, model_name="draft")
    monkeypatch.setenv(AUDIT_READS_ENV, "all")
    client.export_artifact(f"artifact:{dataset.id}", tmp_path / "draft")
    assert dataset.digest in {entry.target for entry in _reads(store)}


@pytest.mark.embedded_only
def test_an_unknown_setting_is_one_sentence_naming_it(
    client: clew.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    monkeypatch.setenv(AUDIT_READS_ENV, "sometimes")
    with pytest.raises(StoreUnavailableError, match="CLEW_AUDIT_READS='sometimes'"):
        client.load_model("iris/1")


@pytest.fixture
def on_s3(tmp_path: Path, s3_artifacts: str) -> Iterator[RunningServer]:
    yield from serve(open_store(str(tmp_path / "server"), s3_artifacts), tmp_path / "server")


def _large_model(client: clew.Client) -> ArtifactRecord:
    """A real fitted model whose pickle is larger than one part, so it is downloaded through a
    presigned redirect."""
    frame = iris_frame()
    model = LogisticRegression(max_iter=200).fit(frame.drop(columns="target"), frame["target"])
    model.padding_ = os.urandom(PART_SIZE + 1024)  # type: ignore[attr-defined]
    with client.start_run("iris", "train", capture_code=False) as run:
        return run.log_model(model, name="large")


@pytest.mark.s3
def test_a_presigned_download_is_audited_before_the_redirect_and_logged_with_its_digest(
    on_s3: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(PRESIGNED_ENV, raising=False)
    alice = clew.connect(on_s3.url, token=on_s3.user("alice", "admin"))
    artifact = _large_model(alice)
    version = alice.register_model(artifact, "large")
    files = _manifest(on_s3.store, version.digest)
    large = max(files.values(), key=on_s3.store.blobs.size_of)
    caplog.set_level(logging.INFO, logger="clew.server.access")
    with on_s3.http(on_s3.user("bob", "viewer")) as bob:
        redirect = bob.get(f"/api/v1/blobs/{large}", headers={"Range": "bytes=0-0"})
    assert redirect.status_code == 307
    assert httpx.get(redirect.headers["location"]).status_code == 200
    [entry] = _reads(on_s3.store)
    assert (entry.actor, entry.action, entry.target) == ("bob", READ_ACTION + "redirect", large)
    assert entry.request_id == redirect.headers["x-request-id"]
    logged = [
        json.loads(record.message)
        for record in caplog.records
        if record.name == "clew.server.access"
    ]
    assert {"digest": large, "status": 307, "user": "bob"}.items() <= logged[-1].items()
    alice.load_model("large/1")
    assert {READ_ACTION + "redirect", READ_ACTION + "stream"} <= {
        entry.action for entry in _reads(on_s3.store) if entry.actor == "alice"
    }
    assert audit.verify_chain(on_s3.store)[1] is None
    alice.close()


def test_the_server_refuses_a_bad_audit_reads_setting_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = typer.Typer()
    app.command()(server)
    assert CliRunner().invoke(app, ["--audit-reads", "sometimes"]).exit_code == 2
    monkeypatch.setenv(AUDIT_READS_ENV, "sometimes")
    result = CliRunner().invoke(app, ["--port", "1"])
    assert result.exit_code != 0
    assert "CLEW_AUDIT_READS='sometimes' is not one of governed, all, off" in str(result.exception)
