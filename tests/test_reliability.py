"""Reliability of a real ``clew server`` process: kill -9 mid-write, PostgreSQL restarting.

Every server here is the real CLI (``clew server``) in a subprocess on a free port, so a
``kill -9`` really kills the process that holds the database connections and half-written
uploads. What a client saw acknowledged (a 2xx answer) must survive; anything else may be
lost, but nothing may be left half-written: ``clew verify`` and ``clew audit verify`` (the
CLI, run after the restart) must pass and version numbers must stay gapless.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from conftest import PostgresServer, free_port
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client.default import reset
from clew.domain import digests
from clew.errors import ClewError, InvalidInputError, StoreUnavailableError
from clew.service import accounts, audit
from clew.service.registry import RegistryService
from clew.store.location import open_store

MODEL = "churn"
WRITERS = 4
UPLOAD_BYTES = 256 * 1024
CLEW = str(Path(sys.executable).parent / "clew")


@dataclass
class ServerProcess:
    """``clew server`` in a subprocess; ``kill`` is SIGKILL, ``start`` reuses the port."""

    uri: str
    artifacts: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [CLEW, "server", "--uri", self.uri, "--artifacts", self.artifacts]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"clew server did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Servers a test starts; whatever still runs is stopped at the end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def _token(uri: str, artifacts: str, user: str = "writer", role: str = "contributor") -> str:
    store = open_store(uri, artifacts)
    try:
        accounts.create_user(store, user, role, actor="test-admin")
        return accounts.create_token(store, user, actor="test-admin").secret
    finally:
        store.close()


@dataclass
class Acknowledged:
    """What the server answered 2xx to: the writes that must survive a kill -9."""

    runs: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact id -> digest
    versions: dict[int, str] = field(default_factory=dict)  # version -> artifact id
    lock: threading.Lock = field(default_factory=threading.Lock)


def _writer(
    url: str, token: str, index: int, workdir: Path, acked: Acknowledged, stop: threading.Event
) -> None:
    """Start a run, upload a model file, end the run, register it; again until told to stop.

    A call that fails (the server is dead, or answered an error) is simply not acknowledged.
    """
    client = clew.Client(url, token=token)
    path = workdir / f"model-{index}.bin"
    attempt = 0
    try:
        while not stop.is_set():
            attempt += 1
            try:
                with client.start_run(
                    experiment="kill9", name=f"w{index}-{attempt}", capture_code=False
                ) as run:
                    with acked.lock:
                        acked.runs.append(run.id)
                    path.write_bytes(os.urandom(UPLOAD_BYTES))
                    artifact = run.log_output(path, name=f"model-w{index}", type="model")
                    with acked.lock:
                        acked.artifacts[artifact.id] = artifact.digest
                version = client.register_model(artifact, MODEL)
                with acked.lock:
                    acked.versions[version.version] = artifact.id
            except ClewError:
                time.sleep(0.05)
    finally:
        client.close()


def _upload_in_flight(
    url: str, token: str, receiving: threading.Event, stop: threading.Event
) -> str:
    """Start streaming a blob upload and never finish it: the kill lands mid-body.

    Returns the digest it announced; that blob was never acknowledged, so it must not exist.
    """
    body = os.urandom(UPLOAD_BYTES)
    digest = digests.digest_bytes(body * 16)

    def chunks() -> Iterator[bytes]:
        yield body
        receiving.set()
        stop.wait(600)  # the body stays unfinished until the test is over

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.put(
                f"{url}/api/v1/blobs/{digest}",
                content=chunks(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,
            )

    threading.Thread(target=send, daemon=True).start()
    return digest


def _versions_acknowledged(acked: Acknowledged) -> int:
    with acked.lock:
        return len(acked.versions)


def _wait_for(condition: object, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _cli(uri: str, artifacts: str, *args: str) -> Result:
    """The ``clew`` CLI in this process (the same app the entry point runs, without paying
    its import time again), on the given store."""
    reset()
    runner = CliRunner(env={"CLEW_URI": uri, "CLEW_ARTIFACTS": artifacts, "COLUMNS": "200"})
    try:
        return runner.invoke(app, list(args))
    finally:
        reset()


def _kill_mid_writes_then_check(server: ServerProcess, token: str, workdir: Path) -> None:
    """Writers run across a kill -9 and a restart on the same port; then everything is checked."""
    acked = Acknowledged()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(server.url, token, i, workdir, acked, stop))
        for i in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    receiving = threading.Event()
    partial = _upload_in_flight(server.url, token, receiving, stop)
    try:
        _wait_for(lambda: _versions_acknowledged(acked) >= 6, "writes before the kill")
        _wait_for(receiving.is_set, "an upload in flight")
        server.kill()
        at_kill = _versions_acknowledged(acked)
        server.start()
        _wait_for(lambda: _versions_acknowledged(acked) >= at_kill + 6, "writes after restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    server.stop()
    _check_store(server.uri, server.artifacts, acked, partial)


def _check_store(uri: str, artifacts: str, acked: Acknowledged, partial: str) -> None:
    client = clew.Client(uri, artifacts)
    try:
        assert not client.store.blobs.exists(partial), "a half-received upload became a blob"
        for run_id in acked.runs:
            assert client.get_run(run_id).id == run_id
        for artifact_id, digest in acked.artifacts.items():
            assert client.store.blobs.verify(digest), f"{artifact_id}'s blob {digest} is damaged"
        registry = RegistryService(client.store)
        versions = registry.versions(MODEL)
        numbers = sorted(version.version for version in versions)
        assert numbers == list(range(1, len(numbers) + 1)), "version numbers have a gap"
        assert registry.get_model(MODEL).last_version == len(numbers)
        by_number = {version.version: version for version in versions}
        for number, artifact_id in acked.versions.items():
            assert by_number[number].artifact_id == artifact_id
            assert by_number[number].digest == acked.artifacts[artifact_id]
    finally:
        client.close()
    verified = _cli(uri, artifacts, "verify")
    assert verified.exit_code == 0, verified.output
    assert "match their digests" in verified.output
    audited = _cli(uri, artifacts, "audit", "verify")
    assert audited.exit_code == 0, audited.output
    assert "the chain is intact" in audited.output


def test_kill_9_mid_uploads_and_registrations_loses_no_acknowledged_write_sqlite(
    tmp_path: Path, server_process: list[ServerProcess]
) -> None:
    store, blobs = str(tmp_path / "store"), str(tmp_path / "store" / "blobs")
    token = _token(store, blobs)
    server = ServerProcess(store, blobs, free_port(), tmp_path / "server.log")
    server_process.append(server)
    server.start()
    _kill_mid_writes_then_check(server, token, tmp_path)


@pytest.mark.postgres
@pytest.mark.s3
def test_kill_9_mid_uploads_and_registrations_loses_no_acknowledged_write_postgres_s3(
    tmp_path: Path, postgres_url: str, s3_artifacts: str, server_process: list[ServerProcess]
) -> None:
    token = _token(postgres_url, s3_artifacts)
    server = ServerProcess(postgres_url, s3_artifacts, free_port(), tmp_path / "server.log")
    server_process.append(server)
    server.start()
    _kill_mid_writes_then_check(server, token, tmp_path)


# --- PostgreSQL restarting under a running server ------------------------------------------


def _create_run(http: httpx.Client, name: str) -> httpx.Response:
    return http.post(
        "/api/v1/runs",
        json={"experiment": "pg-restart", "name": name},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )


def _assert_unavailable(response: httpx.Response, port: int) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "store_unavailable", body
    assert f"{port}" not in body["message"], body["message"]  # the log has it, not the caller
    assert "try again" in body["message"], body["message"]


@pytest.mark.postgres
def test_postgres_restart_gives_503_then_the_same_server_recovers(
    own_postgres: PostgresServer, tmp_path: Path, server_process: list[ServerProcess]
) -> None:
    own_postgres.execute("CREATE DATABASE clew")
    uri, blobs = own_postgres.url("clew"), str(tmp_path / "blobs")
    token = _token(uri, blobs)
    server = ServerProcess(uri, blobs, free_port(), tmp_path / "server.log")
    server_process.append(server)
    server.start()
    # The timeout is the bound: a request that hung instead of failing would raise here.
    http = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    before = _create_run(http, "before")
    assert before.status_code == 201, before.text
    run_id = before.json()["id"]

    own_postgres.stop()
    _assert_unavailable(http.get(f"/api/v1/runs/{run_id}"), own_postgres.port)
    _assert_unavailable(_create_run(http, "during"), own_postgres.port)
    assert http.get("/api/v1/ready").status_code == 503
    assert http.get("/api/v1/health").status_code == 200
    sdk = clew.Client(server.url, token=token)
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        sdk.get_run(run_id)  # the SDK retried its 503s, then raised the server's error

    own_postgres.start()
    assert http.get(f"/api/v1/runs/{run_id}").json()["name"] == "before"
    after = _create_run(http, "after")
    assert after.status_code == 201, after.text
    assert http.get("/api/v1/ready").status_code == 200
    assert sdk.get_run(run_id).name == "before"
    sdk.close()
    assert server.process is not None and server.process.poll() is None, "server restarted"
    http.close()
    server.stop()
    assert '"status": 500' not in server.log.read_text()
    found = clew.Client(uri, blobs).search_runs(experiments=["pg-restart"])
    assert set(found["name"]) == {"before", "after"}


# --- SQLite commit durability setting --------------------------------------------------------


def _synchronous(home: Path) -> int:
    client = clew.Client(str(home))
    try:
        with client.store.db.read() as connection:
            return connection.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        client.close()


@pytest.mark.sqlite_only
def test_clew_sqlite_sync_selects_full_or_normal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEW_SQLITE_SYNC", "full")
    assert _synchronous(tmp_path / "store") == 2
    monkeypatch.setenv("CLEW_SQLITE_SYNC", "Normal")
    assert _synchronous(tmp_path / "store") == 1


@pytest.mark.sqlite_only
def test_an_unknown_clew_sqlite_sync_value_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEW_SQLITE_SYNC", "off")
    with pytest.raises(InvalidInputError, match=r"CLEW_SQLITE_SYNC='off'.*use full or normal"):
        clew.Client(str(tmp_path / "store"))


@pytest.mark.postgres
def test_a_connection_lost_mid_write_is_store_unavailable_and_the_next_write_reconnects(
    postgres_url: str, tmp_path: Path
) -> None:
    """Hot paths run plain SQL on the DBAPI cursor; a dropped connection there must still be
    the clear 503 error, not a raw driver exception, and must not poison the pool."""
    import psycopg

    store = open_store(postgres_url, str(tmp_path / "blobs"))
    try:
        admin_url = postgres_url.replace("+psycopg", "")
        with (
            pytest.raises(StoreUnavailableError, match="unavailable"),
            store.db.write() as connection,
        ):
            backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
            audit.append(connection, "alice", "test.write", "lost", {"n": 1})
        with store.db.write() as connection:
            audit.append(connection, "alice", "test.write", "kept", {"n": 2})
        assert [entry.target for entry in audit.entries(store, action="test.")] == ["kept"]
        assert audit.verify_chain(store)[1] is None
    finally:
        store.close()
