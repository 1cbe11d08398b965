"""Large blobs through a real server: streamed multipart uploads, parallel ranged downloads.

Sizes are just above one part (``PART_SIZE``) so uploads really go up as S3 multipart
uploads and downloads really come down as several ranges; a server runs on local blobs and
on a real SeaweedFS (the ``s3_artifacts`` fixture), never a mock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
import typer
from server_fixtures import RunningServer, serve
from typer.testing import CliRunner

import clew
from clew.cli import ops
from clew.cli.output import ClewGroup
from clew.client import remote_blobs
from clew.client.transport import Transport
from clew.domain import digests
from clew.errors import FileChangedError, IntegrityError
from clew.server.routes.artifacts import (
    DEFAULT_PRESIGNED_SECONDS,
    PRESIGNED_ENV,
    PRESIGNED_MIN_BYTES,
)
from clew.service import gc
from clew.store.location import open_store
from clew.store.object_store import PART_SIZE, ObjectBlobStore

SIZE = PART_SIZE + PART_SIZE // 2 + 7
ops_app = typer.Typer(cls=ClewGroup)
ops_app.command("gc")(ops.gc)


def _random_file(path: Path, size: int = SIZE) -> tuple[Path, str]:
    data = os.urandom(size)
    path.write_bytes(data)
    return path, digests.digest_bytes(data)


def _s3(blobs: ObjectBlobStore):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def _bucket_key(blobs: ObjectBlobStore, digest: str) -> tuple[str, str]:
    bucket, _, key = blobs.key_for(digest).partition("/")
    return bucket, key


def _pending_uploads(blobs: ObjectBlobStore) -> list[str]:
    bucket, _, prefix = blobs.root.partition("/")
    listing = _s3(blobs).list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/")
    return [upload["Key"] for upload in listing.get("Uploads", [])]


@pytest.fixture(params=["local", "s3"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    """A server whose blobs live in a local directory or on SeaweedFS S3."""
    artifacts = request.getfixturevalue("s3_artifacts") if request.param == "s3" else None
    yield from serve(open_store(str(tmp_path / "server"), artifacts), tmp_path / "server")


@pytest.fixture
def on_s3(tmp_path: Path, s3_artifacts: str) -> Iterator[RunningServer]:
    yield from serve(open_store(str(tmp_path / "server"), s3_artifacts), tmp_path / "server")


def _client(server: RunningServer) -> clew.Client:
    return clew.connect(server.url, token=server.user("alice"))


def test_a_large_artifact_round_trips_in_parts_and_ranges(
    running: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 MiB ranges: the download runs through more ranges than threads, in a sliding window.
    monkeypatch.setattr(remote_blobs, "DOWNLOAD_RANGE", 1024 * 1024)
    source, digest = _random_file(tmp_path / "weights.bin")
    client = _client(running)
    with client.start_run(experiment="e", name="r", capture_code=False) as run:
        record = run.log_artifact(source, name="weights")
    assert record.digest == digest
    assert running.store.blobs.verify(digest)
    target = tmp_path / "out" / "weights.bin"
    client.export_artifact(f"file:weights@{digest}", target)
    assert target.read_bytes() == source.read_bytes()
    assert sorted(path.name for path in target.parent.iterdir()) == ["weights.bin"]
    if isinstance(running.store.blobs, ObjectBlobStore):
        assert _pending_uploads(running.store.blobs) == []
    client.close()


def _upload_while(server: RunningServer, source: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Upload ``source`` with the remote SDK, calling ``change`` once the first 8 MiB left."""
    client = _client(server)
    changed: list[int] = []

    def progress(count: int) -> None:
        if not changed:
            changed.append(count)
            change(source)

    try:
        client.store.blobs.put_file(source, progress)
    finally:
        client.close()


def _rewrite_tail(source: Path) -> None:
    with open(source, "r+b") as writer:
        writer.seek(SIZE - 1024)
        writer.write(os.urandom(1024))


def _truncate(source: Path) -> None:
    os.truncate(source, PART_SIZE + 100)


@pytest.mark.parametrize(
    ("change", "message"),
    [(_rewrite_tail, "may have changed while uploading"), (_truncate, "got shorter")],
)
def test_a_large_file_changed_during_its_upload_is_refused_and_nothing_is_stored(
    running: RunningServer, tmp_path: Path, change, message: str
) -> None:  # type: ignore[no-untyped-def]
    source, digest = _random_file(tmp_path / "weights.bin")
    with pytest.raises(FileChangedError, match=message):
        _upload_while(running, source, change)
    assert not running.store.blobs.exists(digest)
    if isinstance(running.store.blobs, ObjectBlobStore):
        _wait_for(lambda: not _pending_uploads(running.store.blobs))


@pytest.mark.s3
def test_a_bad_digest_aborts_the_multipart_upload_and_leaves_no_object(
    on_s3: RunningServer,
) -> None:
    blobs = on_s3.store.blobs
    assert isinstance(blobs, ObjectBlobStore)
    claimed = digests.digest_bytes(b"the real model")
    with on_s3.http(on_s3.user("alice")) as alice:
        response = alice.put(f"/api/v1/blobs/{claimed}", content=os.urandom(SIZE))
    assert response.status_code == 400
    assert response.json()["code"] == "digest_mismatch"
    assert "nothing was stored" in response.json()["message"]
    assert not blobs.exists(claimed)
    assert _pending_uploads(blobs) == []


@pytest.mark.s3
def test_an_interrupted_upload_leaves_nothing_visible_and_no_parts(on_s3: RunningServer) -> None:
    blobs = on_s3.store.blobs
    assert isinstance(blobs, ObjectBlobStore)
    data = os.urandom(SIZE)
    digest = digests.digest_bytes(data)
    address = urlsplit(on_s3.url)
    with socket.create_connection((address.hostname, address.port)) as connection:
        head = (
            f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: Bearer {on_s3.user('alice')}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        connection.sendall(head.encode() + data[: PART_SIZE + 1024])
        _wait_for(lambda: bool(_pending_uploads(blobs)))
    _wait_for(lambda: not _pending_uploads(blobs))
    assert not blobs.exists(digest)


def _wait_for(condition, seconds: float = 20) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` (the server reacts to a dropped connection on its own thread)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server never reached the expected state"
        time.sleep(0.05)


def test_range_requests_need_a_token_and_return_the_asked_bytes(running: RunningServer) -> None:
    data = os.urandom(PART_SIZE + 10)
    digest = running.store.blobs.put_bytes(data).digest
    path = f"/api/v1/blobs/{digest}?relay=true"  # on S3, the server's own bytes, no redirect
    with running.http() as anonymous:
        refused = anonymous.get(path, headers={"Range": "bytes=0-99"})
    assert refused.status_code == 401
    with running.http(running.user("viewer", role="viewer")) as viewer:
        middle = viewer.get(path, headers={"Range": "bytes=100-199"})
        tail = viewer.get(path, headers={"Range": "bytes=-5"})
        beyond = viewer.get(path, headers={"Range": f"bytes={len(data)}-"})
    assert middle.status_code == 206
    assert middle.content == data[100:200]
    assert middle.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert tail.content == data[-5:]
    assert beyond.status_code == 416


def _corrupt(server: RunningServer, digest: str, size: int) -> None:
    """Replace the stored bytes behind ``digest`` with other bytes of the same size."""
    blobs = server.store.blobs
    if isinstance(blobs, ObjectBlobStore):
        bucket, key = _bucket_key(blobs, digest)
        _s3(blobs).put_object(Bucket=bucket, Key=key, Body=os.urandom(size))
    else:
        path = blobs.path_for(digest)
        path.chmod(0o644)
        path.write_bytes(os.urandom(size))


def test_a_damaged_blob_never_appears_at_the_destination(
    running: RunningServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    digest = running.store.blobs.put_bytes(data).digest
    _corrupt(running, digest, SIZE)
    client = _client(running)
    blobs = client.store.blobs
    target = tmp_path / "out" / "model.bin"
    with pytest.raises(IntegrityError, match=digest):
        blobs.export_file(digest, target)
    assert list(target.parent.iterdir()) == []
    assert not blobs.verify(digest)
    client.close()


@pytest.mark.s3
def test_presigned_downloads_redirect_only_authenticated_callers(
    on_s3: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEW_PRESIGNED_DOWNLOADS", "60")
    data = os.urandom(SIZE)
    digest = on_s3.store.blobs.put_bytes(data).digest
    with on_s3.http() as anonymous:
        assert anonymous.get(f"/api/v1/blobs/{digest}").status_code == 401
    client = _client(on_s3)
    with on_s3.http(on_s3.tokens["alice"]) as alice:
        redirect = alice.get(f"/api/v1/blobs/{digest}")
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert "Signature=" in location
    assert on_s3.tokens["alice"] not in location
    blobs = client.store.blobs
    target = blobs.export_file(digest, tmp_path / "model.bin")
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digests.hex_part(digest)
    assert blobs.read_bytes(digest) == data
    _corrupt(on_s3, digest, SIZE)
    with pytest.raises(IntegrityError, match=digest):
        blobs.export_file(digest, tmp_path / "again.bin")
    assert not (tmp_path / "again.bin").exists()
    client.close()


@pytest.mark.s3
def test_a_presigned_download_is_an_attachment_like_a_relayed_one(
    on_s3: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object store answers the redirect with the server's own Content-Disposition."""
    monkeypatch.delenv(PRESIGNED_ENV, raising=False)
    digest = on_s3.store.blobs.put_bytes(os.urandom(PRESIGNED_MIN_BYTES)).digest
    asked = f"/api/v1/blobs/{digest}?filename=../model.html"
    with on_s3.http(on_s3.user("alice")) as alice:
        redirect = alice.get(asked)
        relayed = alice.get(f"{asked}&relay=true", headers={"Range": "bytes=0-9"})
    assert redirect.status_code == 307
    direct = httpx.get(redirect.headers["location"], headers={"Range": "bytes=0-9"})
    assert direct.status_code == 206
    wanted = 'attachment; filename="model.html"'
    assert relayed.headers["content-disposition"] == wanted
    assert direct.headers["content-disposition"] == wanted


@pytest.mark.s3
def test_large_s3_blobs_redirect_by_default_and_small_or_relayed_ones_do_not(
    on_s3: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PRESIGNED_ENV, raising=False)
    large = os.urandom(PRESIGNED_MIN_BYTES)
    large_digest = on_s3.store.blobs.put_bytes(large).digest
    small_digest = on_s3.store.blobs.put_bytes(b"weights").digest
    first_bytes = {"Range": "bytes=0-9"}
    with on_s3.http(on_s3.user("alice")) as alice:
        redirect = alice.get(f"/api/v1/blobs/{large_digest}", headers=first_bytes)
        relayed = alice.get(f"/api/v1/blobs/{large_digest}?relay=true", headers=first_bytes)
        small = alice.get(f"/api/v1/blobs/{small_digest}")
        monkeypatch.setenv(PRESIGNED_ENV, "0")
        switched_off = alice.get(f"/api/v1/blobs/{large_digest}", headers=first_bytes)
    assert redirect.status_code == 307
    assert f"X-Amz-Expires={DEFAULT_PRESIGNED_SECONDS}" in redirect.headers["location"]
    assert httpx.get(redirect.headers["location"], headers=first_bytes).content == large[:10]
    assert (relayed.status_code, relayed.content) == (206, large[:10])
    assert (small.status_code, small.content) == (200, b"weights")
    assert (switched_off.status_code, switched_off.content) == (206, large[:10])


class _Firewall:
    """A TCP forwarder to the object store that drops every connection opened by a presigned
    GET after the first ``allowed`` ones: a network where the server reaches the object
    store and clients do not (or stop to, part way through a download)."""

    def __init__(self, endpoint: str, allowed: int) -> None:
        target = urlsplit(endpoint)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._allowed = allowed
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                incoming, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(incoming,), daemon=True).start()

    def _forward(self, incoming: socket.socket) -> None:
        first = incoming.recv(65536)
        if b"X-Amz-Signature=" in first.split(b"\r\n", 1)[0]:
            with self._lock:
                self._allowed -= 1
                if self._allowed < 0:
                    self.dropped += 1
                    incoming.close()
                    return
        outgoing = socket.create_connection(self._target)
        outgoing.sendall(first)
        threading.Thread(target=_pump, args=(outgoing, incoming), daemon=True).start()
        _pump(incoming, outgoing)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(1 << 20):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


@pytest.mark.s3
@pytest.mark.parametrize("allowed", [0, 1], ids=["at-the-first-byte", "part-way"])
def test_a_client_the_object_store_refuses_downloads_through_the_server(
    allowed: int,
    tmp_path: Path,
    s3_artifacts: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(PRESIGNED_ENV, raising=False)
    firewall = _Firewall(os.environ["AWS_ENDPOINT_URL"], allowed)
    store = open_store(str(tmp_path / "server"), f"{s3_artifacts}?endpoint_url={firewall.url}")
    for server in serve(store, tmp_path / "server"):
        source, digest = _random_file(tmp_path / "model.bin")
        client = _client(server)
        with client.start_run("transfer", "firewalled") as run:
            record = run.log_artifact(source, name="model")
        with caplog.at_level(logging.WARNING, logger="clew.client.transport"):
            first = client.store.blobs.export_file(record.digest, tmp_path / "first.bin")
        dropped = firewall.dropped
        second = client.store.blobs.export_file(record.digest, tmp_path / "second.bin")
        assert record.digest == digest
        assert first.read_bytes() == second.read_bytes() == source.read_bytes()
        assert dropped >= 1
        assert firewall.dropped == dropped  # once out of reach, the redirect is not tried again
        assert "downloading through the clew server instead" in caplog.text
        client.close()
    firewall.close()


@pytest.mark.s3
def test_stale_multipart_uploads_under_the_prefix_are_aborted(s3_artifacts: str) -> None:
    blobs = ObjectBlobStore.from_url(s3_artifacts)
    s3 = _s3(blobs)
    bucket, _, prefix = blobs.root.partition("/")
    mine = s3.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/sha256/ab/cd/abandoned")
    theirs = s3.create_multipart_upload(Bucket=bucket, Key=f"{prefix}-other/sha256/ab/cd/x")
    assert blobs.abort_stale_uploads(cutoff_ms=0) == []
    found = blobs.abort_stale_uploads(cutoff_ms=int(time.time() * 1000) + 60_000, dry_run=True)
    assert found == [f"{bucket}/{prefix}/sha256/ab/cd/abandoned"]
    assert _pending_uploads(blobs) == [f"{prefix}/sha256/ab/cd/abandoned"]
    blobs.abort_stale_uploads(cutoff_ms=int(time.time() * 1000) + 60_000)
    assert _pending_uploads(blobs) == []
    others = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}-other/")["Uploads"]
    assert [upload["UploadId"] for upload in others] == [theirs["UploadId"]]
    assert mine["UploadId"] not in {upload["UploadId"] for upload in others}


@pytest.mark.s3
def test_gc_leaves_a_multipart_upload_in_progress_alone(tmp_path: Path, s3_artifacts: str) -> None:
    store = open_store(str(tmp_path / "meta"), s3_artifacts)
    blobs = store.blobs
    assert isinstance(blobs, ObjectBlobStore)
    bucket, _, prefix = blobs.root.partition("/")
    _s3(blobs).create_multipart_upload(Bucket=bucket, Key=f"{prefix}/sha256/ab/cd/in-progress")
    report = gc.collect(store, "admin", delete=True, grace_ms=0)
    assert report.stale_uploads == []
    assert _pending_uploads(blobs) == [f"{prefix}/sha256/ab/cd/in-progress"]
    store.close()


@pytest.mark.s3
def test_a_malformed_presigned_setting_is_a_clear_server_error(
    on_s3: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller learns the server is unavailable; the operator's log names the setting."""
    monkeypatch.setenv("CLEW_PRESIGNED_DOWNLOADS", "five minutes")
    digest = on_s3.store.blobs.put_bytes(b"weights").digest
    with on_s3.http(on_s3.user("alice")) as alice:
        response = alice.get(f"/api/v1/blobs/{digest}")
    assert response.status_code == 503
    assert "CLEW_PRESIGNED_DOWNLOADS" not in response.json()["message"]
    assert "CLEW_PRESIGNED_DOWNLOADS='five minutes' is not a number of seconds" in caplog.text


def test_an_empty_blob_downloads_as_an_empty_file(running: RunningServer, tmp_path: Path) -> None:
    digest = running.store.blobs.put_bytes(b"").digest
    client = _client(running)
    target = client.store.blobs.export_file(digest, tmp_path / "empty.bin")
    assert target.read_bytes() == b""
    assert client.store.blobs.verify(digest)
    client.close()


class _ObjectStoreStandIn(BaseHTTPRequestHandler):
    """Answers every GET with bytes 0-19 of a 20-byte blob, whatever range was asked for,
    and remembers each request's path and headers."""

    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(206)
        self.send_header("Content-Range", "bytes 0-19/20")
        self.send_header("Content-Length", "20")
        self.end_headers()
        self.wfile.write(bytes(range(20)))

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[str]:
    _ObjectStoreStandIn.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ObjectStoreStandIn)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/bucket/key?X-Amz-Signature=abc"
    httpd.shutdown()
    httpd.server_close()


def test_ranges_from_a_presigned_url_carry_no_token_and_must_be_the_ones_asked(
    stand_in: str,
) -> None:
    transport = Transport("http://127.0.0.1:9", token="secret-token")
    written: dict[int, bytes] = {}

    def keep(offset: int, data: memoryview) -> None:
        written[offset] = bytes(data)

    source = remote_blobs._Source(transport.direct, stand_in)
    whole = remote_blobs._RangeReader(transport, source, 20, keep)
    assert bytes(whole.read(0, bytearray(remote_blobs.DOWNLOAD_RANGE))) == bytes(range(20))
    assert written == {0: bytes(range(20))}
    whole.close()
    path, headers = _ObjectStoreStandIn.seen[0]
    assert path == "/bucket/key?X-Amz-Signature=abc"
    assert headers["range"] == "bytes=0-19"
    assert "authorization" not in headers
    assert "secret-token" not in str(headers)
    longer = remote_blobs._RangeReader(transport, source, 40, keep)
    with pytest.raises(IntegrityError, match="byte range other than"):
        longer.read(0, bytearray(remote_blobs.DOWNLOAD_RANGE))
    longer.close()
    transport.close()


@pytest.mark.s3
def test_cli_gc_reports_and_aborts_stale_multipart_uploads(
    tmp_path: Path, s3_artifacts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(str(tmp_path / "meta"), s3_artifacts)
    blobs = store.blobs
    assert isinstance(blobs, ObjectBlobStore)
    bucket, _, prefix = blobs.root.partition("/")
    _s3(blobs).create_multipart_upload(Bucket=bucket, Key=f"{prefix}/sha256/ab/cd/abandoned")
    store.close()
    monkeypatch.setattr(gc, "STALE_UPLOAD_MS", 0)  # a day's wait, shortened: it is stale now
    time.sleep(1.1)  # the object store's upload times have one-second resolution
    options = ["--uri", str(tmp_path / "meta"), "--artifacts", s3_artifacts]
    runner = CliRunner()
    dry = runner.invoke(ops_app, options)
    assert dry.exit_code == 0, dry.output
    assert "would abort 1 multipart uploads" in dry.output
    assert "--yes" in dry.output
    assert _pending_uploads(blobs) == [f"{prefix}/sha256/ab/cd/abandoned"]
    done = runner.invoke(ops_app, [*options, "--yes", "--format", "json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["stale_uploads"] == [f"{bucket}/{prefix}/sha256/ab/cd/abandoned"]
    assert _pending_uploads(blobs) == []
