"""Bounded input on a real ``clew server`` process: small hostile bodies and connections cost
the server no more than a bounded amount of memory and time, watched from outside the process
(its peak resident size, ``VmHWM`` in /proc/PID/status)."""

from __future__ import annotations

import hashlib
import mmap
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
import typer
from server_fixtures import (  # noqa: F401
    RunningServer,
    serve,
    server,
    server_store,
    wait_until_ready,
)
from typer.testing import CliRunner

from clew.cli.server import server as server_command
from clew.domain import ids
from clew.errors import InvalidInputError
from clew.server import arrow_bodies, hosts
from clew.server.arrow_bodies import ARROW_STREAM, Limits
from clew.server.arrow_limits import Cost, message_cost
from clew.server.hosts import ALLOWED_HOSTS_ENV, LOOPBACK_HOSTS
from clew.server.read_timeouts import BODY_TIMEOUT_ENV, HEADER_TIMEOUT_ENV
from clew.service import accounts
from clew.store.location import open_store

ARROW = {"Content-Type": ARROW_STREAM}
BOMB_BYTES = 512 * 1024 * 1024  # what a bomb decompresses to
MAX_GROWTH = 128 * 1024 * 1024  # what refusing one may cost the server at most
LAUNCHER = "import typer; from clew.cli.server import server; typer.run(server)"


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    token: str

    def peak_rss(self) -> int:
        """The server's peak resident size so far, in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    tmp_path: Path, *options: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """``clew server`` in its own process on the test's store (SQLite here, or PostgreSQL + S3
    from ``CLEW_URI``/``CLEW_ARTIFACTS`` under that backend), with a contributor's token."""
    on_postgres = os.environ.get("CLEW_URI", "").startswith("postgresql")
    uri = [] if on_postgres else ["--uri", str(tmp_path / "server-store")]
    store = open_store(None if on_postgres else tmp_path / "server-store")
    try:
        accounts.create_user(store, "mallory", "contributor", actor="test-admin")
        token = accounts.create_token(store, "mallory", actor="test-admin").secret
    finally:
        store.close()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *uri, "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ | (env or {}),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, time.monotonic() + 180)
        yield ServerProcess(url, process, token)
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture
def clew_server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path)


def _zeros(size: int) -> pa.Buffer:
    """``size`` zero bytes that cost this process nothing: untouched anonymous pages."""
    return pa.py_buffer(mmap.mmap(-1, size))


def _zstd_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def many_rows_bomb() -> bytes:
    """64 million rows of 0.0: a few hundred KB that decompress to 512 MiB."""
    rows = BOMB_BYTES // 8
    return _zstd_stream(
        pa.table({"value": pa.Array.from_buffers(pa.float64(), rows, [None, _zeros(BOMB_BYTES)])})
    )


def one_fat_row_bomb() -> bytes:
    """One row whose only value is a 512 MiB string of NULs: within any row count."""
    offsets = pa.py_buffer(pa.array([0, BOMB_BYTES], pa.int32()).buffers()[1])
    key = pa.Array.from_buffers(pa.string(), 1, [None, offsets, _zeros(BOMB_BYTES)])
    return _zstd_stream(pa.table({"key": key}))


def _warm_up(client: httpx.Client, run_id: str) -> None:
    """One real Arrow request of each kind first, so the baseline includes what decoding
    legitimately loads (pyarrow's compute kernels, zstd contexts)."""
    small = _zstd_stream(pa.table({"value": pa.array([1.0])}))
    client.post(f"/api/v1/runs/{run_id}/metrics", content=small, headers=ARROW)
    client.post(
        "/api/v1/models/m/versions/1/captures",
        params={"batch": ids.new_id()},
        content=small,
        headers=ARROW,
    )


@pytest.mark.parametrize("bomb", [many_rows_bomb, one_fat_row_bomb], ids=["rows", "fat-row"])
@pytest.mark.parametrize("route", ["metrics", "captures"])
def test_a_compressed_arrow_bomb_is_refused_before_it_costs_memory(
    clew_server: ServerProcess, bomb: object, route: str
) -> None:
    body = bomb()  # type: ignore[operator]
    assert len(body) < 2 * 1024 * 1024
    with clew_server.http() as client:
        run_id = client.post("/api/v1/runs", json={"name": "bomb"}).json()["id"]
        _warm_up(client, run_id)
        before = clew_server.peak_rss()
        if route == "metrics":
            response = client.post(f"/api/v1/runs/{run_id}/metrics", content=body, headers=ARROW)
        else:
            response = client.post(
                "/api/v1/models/m/versions/1/captures",
                params={"batch": ids.new_id()},
                content=body,
                headers=ARROW,
            )
        grown = clew_server.peak_rss() - before
    assert grown < MAX_GROWTH, f"refusing a {len(body)}-byte body grew the server by {grown} bytes"
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_input"
    assert "send fewer rows per request" in response.json()["message"]


@pytest.mark.backend_independent
@pytest.mark.parametrize("compression", [None, "zstd", "lz4"])
def test_a_stream_decodes_within_exactly_its_declared_cost(compression: str | None) -> None:
    table = pa.table(
        {
            "prediction_id": pa.array([f"p{row}" for row in range(500)]),
            "label": pa.array(["yes", "no"] * 250).dictionary_encode(),
            "inputs": pa.array([{"x": [float(row)] * 3, "y": row} for row in range(500)]),
        }
    )
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=200)
    body = bytes(sink.getvalue().to_pybytes())
    cost = Cost()
    for message in pa.ipc.MessageReader.open_stream(pa.py_buffer(body)):
        cost += message_cost(message)
    assert cost.rows == 500
    assert cost.values >= 500 * 6  # ids, labels, the struct, x, x's items, y
    exact = Limits(cost.rows, cost.values, cost.decoded_bytes)
    assert arrow_bodies.decode(body, "batch", exact).equals(table)
    for tighter in (
        Limits(cost.rows - 1, cost.values, cost.decoded_bytes),
        Limits(cost.rows, cost.values - 1, cost.decoded_bytes),
        Limits(cost.rows, cost.values, cost.decoded_bytes - 1),
    ):
        with pytest.raises(InvalidInputError, match="send fewer rows per request"):
            arrow_bodies.decode(body, "batch", tighter)


@pytest.fixture
def impatient_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that gives request headers and stalled bodies one second."""
    yield from start_server(tmp_path, env={"CLEW_HEADER_TIMEOUT": "1", "CLEW_BODY_TIMEOUT": "1"})


def _connect(target: ServerProcess) -> socket.socket:
    host, port = target.url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.settimeout(20)  # far past the server's 1 s: only a server that never closes fails
    return connection


def _read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open (it sent {received!r})")
    finally:
        connection.close()
    return received


def test_connections_that_never_finish_their_headers_are_closed(
    impatient_server: ServerProcess,
) -> None:
    connections = [_connect(impatient_server) for _ in range(20)]
    for connection in connections:
        connection.sendall(b"GET /api/v1/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
    for connection in connections:
        assert _read_until_closed(connection).startswith(b"HTTP/1.1 408 ")
    assert httpx.get(f"{impatient_server.url}/api/v1/ready").status_code == 200


def test_headers_sent_a_byte_at_a_time_are_cut_off(impatient_server: ServerProcess) -> None:
    connection = _connect(impatient_server)
    trickle = b"GET /api/v1/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 100
    try:
        for byte in trickle:  # 100 bytes a tenth of a second apart: ten times the timeout
            connection.sendall(bytes([byte]))
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        connection.close()
        return
    pytest.fail("the server read headers a byte at a time for 10 s")


def test_a_stalled_body_is_cut_off(impatient_server: ServerProcess) -> None:
    connection = _connect(impatient_server)
    head = (
        "POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {impatient_server.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    connection.sendall(head.encode() + b'{"name": ')
    assert _read_until_closed(connection).startswith(b"HTTP/1.1 408 ")


def test_an_idle_keep_alive_connection_that_starts_a_request_must_finish_it(
    impatient_server: ServerProcess,
) -> None:
    connection = _connect(impatient_server)
    request = b"GET /api/v1/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    connection.sendall(request)
    connection.sendall(request[:20])  # the next request starts, and never ends
    answers = _read_until_closed(connection)
    assert answers.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in answers


@pytest.mark.backend_independent
@pytest.mark.parametrize("flag", ["--header-timeout", "--body-timeout"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(
    monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    for name in (HEADER_TIMEOUT_ENV, BODY_TIMEOUT_ENV):
        monkeypatch.setenv(name, "")  # restored after the command sets it
    app = typer.Typer()
    app.command()(server_command)
    result = CliRunner().invoke(app, [flag, "0"])
    assert isinstance(result.exception, InvalidInputError)
    assert "is not a number of seconds between 0 and 86400" in str(result.exception)


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server on loopback with anonymous reads and no --allowed-hosts: the rebinding target."""
    yield from start_server(tmp_path, "--anonymous-read")


def test_a_loopback_server_answers_only_to_loopback_names(open_server: ServerProcess) -> None:
    port = open_server.url.rsplit(":", 1)[1]
    for name in ("127.0.0.1", "localhost", "LOCALHOST"):
        answer = httpx.get(f"{open_server.url}/api/v1/ready", headers={"Host": f"{name}:{port}"})
        assert answer.status_code == 200, name
    for path in ("/api/v1/ready", "/api/v1/audit/log", "/ui/"):
        rebound = httpx.get(
            f"{open_server.url}{path}", headers={"Host": f"attacker.example:{port}"}
        )
        assert rebound.status_code == 400, path
        assert rebound.json()["code"] == "bad_request"
        assert "does not answer to the host name 'attacker.example'" in rebound.json()["message"]
        assert "--allowed-hosts" in rebound.json()["message"]


def test_the_allowed_hosts_are_the_only_names_served(tmp_path: Path) -> None:
    store, root = server_store(tmp_path)
    for running in serve(store, root, allowed_hosts=["clew.example.com", "*.corp.example"]):
        for name, status in [
            ("clew.example.com", 200),
            ("CLEW.example.com:443", 200),
            ("ml.corp.example", 200),
            ("corp.example", 400),
            ("clew.example.com.attacker.example", 400),
            ("127.0.0.1", 400),
            ("", 400),
        ]:
            answer = httpx.get(f"{running.url}/api/v1/ready", headers={"Host": name})
            assert answer.status_code == status, name


@pytest.mark.backend_independent
def test_a_public_server_with_anonymous_reads_must_name_its_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    for name in (HEADER_TIMEOUT_ENV, BODY_TIMEOUT_ENV):
        monkeypatch.setenv(name, "")
    app = typer.Typer()
    app.command()(server_command)
    result = CliRunner().invoke(app, ["--host", "0.0.0.0", "--anonymous-read"])
    assert isinstance(result.exception, InvalidInputError)
    assert "must be told the names it is reached by" in str(result.exception)
    assert "--allowed-hosts clew.example.com" in str(result.exception)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    ("bind", "anonymous", "given", "expected"),
    [
        ("127.0.0.1", True, [], list(LOOPBACK_HOSTS)),
        ("::1", True, [], list(LOOPBACK_HOSTS)),
        ("localhost", False, [], list(LOOPBACK_HOSTS)),
        ("0.0.0.0", False, [], ["*"]),
        ("10.1.2.3", True, ["clew.example.com"], ["clew.example.com"]),
    ],
)
def test_the_default_allow_list_follows_the_bind_address(
    bind: str, anonymous: bool, given: list[str], expected: list[str]
) -> None:
    assert hosts.allowed_hosts(bind, anonymous, given) == expected


@pytest.mark.backend_independent
def test_an_ipv6_host_header_keeps_its_brackets() -> None:
    assert hosts.host_name("[::1]:8080") == "[::1]"
    assert hosts.host_name("[::1]") == "[::1]"
    assert hosts.matches(hosts.host_name("[::1]:8080"), LOOPBACK_HOSTS)


HTML = b"<html><body><script>fetch('/api/v1/audit/log')</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


@pytest.mark.parametrize("content", [HTML, SVG], ids=["html", "svg"])
def test_a_blob_is_downloaded_as_a_sandboxed_attachment(
    server: RunningServer,  # noqa: F811
    content: bytes,
) -> None:
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    with server.http(server.user("alice")) as client:
        assert client.put(f"/api/v1/blobs/{digest}", content=content).status_code == 201
        for headers in ({}, {"Range": "bytes=0-9"}):
            answer = client.get(f"/api/v1/blobs/{digest}", headers=headers)
            assert answer.status_code in (200, 206)
            assert answer.headers["content-type"] == "application/octet-stream"
            disposition = f'attachment; filename="{digest.replace(":", "-")}"'
            assert answer.headers["content-disposition"] == disposition
            policies = answer.headers.get_list("content-security-policy")
            assert any(policy.split(";")[0].strip() == "sandbox" for policy in policies)


@pytest.mark.parametrize(
    ("asked", "sent"),
    [
        ("report.html", "report.html"),
        ('../../etc/"pass\r\nwd".svg', "_pass__wd_.svg"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("...", None),
        ("résumé.pdf", "r_sum_.pdf"),
    ],
)
def test_a_download_file_name_is_sanitised(
    server: RunningServer,  # noqa: F811
    asked: str,
    sent: str | None,
) -> None:
    digest = "sha256:" + hashlib.sha256(HTML).hexdigest()
    with server.http(server.user("alice")) as client:
        client.put(f"/api/v1/blobs/{digest}", content=HTML)
        answer = client.get(f"/api/v1/blobs/{digest}", params={"filename": asked})
    name = sent or digest.replace(":", "-")
    assert answer.headers["content-disposition"] == f'attachment; filename="{name}"'
