"""``clew admin`` bootstraps users and tokens; ``clew server`` serves them from a subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer
import uvicorn
from server_fixtures import wait_until_ready
from typer.testing import CliRunner
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from clew.cli.server import admin_app, server
from clew.server.http_protocol import NoDelayH11Protocol
from clew.server.routes.artifacts import (
    MAX_PRESIGNED_SECONDS,
    PRESIGNED_ENV,
    PRESIGNED_MIN_BYTES,
)
from clew.store.location import open_store


def admin(*args: str) -> str:
    result = CliRunner().invoke(admin_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_admin_bootstrap_then_a_multi_worker_server(tmp_path: Path) -> None:
    store = str(tmp_path / "team-store")
    assert "created user alice (approver)" in admin(
        "create-user", "alice", "--role", "approver", "--uri", store
    )
    printed = admin("create-token", "alice", "--days", "7", "--uri", store)
    token = printed.strip().splitlines()[-1]
    assert token.startswith("clew_") and "shown only once" in printed
    port = free_port()
    launcher = "import typer; from clew.cli.server import server; typer.run(server)"
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "--uri", store, "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, time.monotonic() + 180)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/api/v1/whoami", headers=headers).json()["role"] == "approver"
        token_id = printed.split("token ")[1].split(" ")[0]
        admin("revoke-token", token_id, "--uri", store)
        assert httpx.get(f"{url}/api/v1/whoami", headers=headers).status_code == 401
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert '"route": "/api/v1/whoami", "status": 401' in output


@pytest.mark.s3
def test_presigned_downloads_flag_redirects_blob_downloads(
    tmp_path: Path, s3_artifacts: str
) -> None:
    store = str(tmp_path / "team-store")
    admin("create-user", "alice", "--uri", store)
    token = admin("create-token", "alice", "--uri", store).strip().splitlines()[-1]
    blobs = open_store(store, s3_artifacts)
    weights = os.urandom(PRESIGNED_MIN_BYTES)
    digest = blobs.blobs.put_bytes(weights).digest
    blobs.close()
    port = free_port()
    launcher = "import typer; from clew.cli.server import server; typer.run(server)"
    arguments = ["--uri", store, "--artifacts", s3_artifacts, "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, *arguments, "--presigned-downloads", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, time.monotonic() + 180)
        headers = {"Authorization": f"Bearer {token}"}
        redirect = httpx.get(f"{url}/api/v1/blobs/{digest}", headers=headers)
        assert redirect.status_code == 307
        assert "Signature=" in redirect.headers["location"]
        assert "X-Amz-Expires=60" in redirect.headers["location"]
        assert httpx.get(redirect.headers["location"]).content == weights
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_an_out_of_range_presigned_downloads_flag_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PRESIGNED_ENV, "0")  # restored after the command sets it
    app = typer.Typer()
    app.command()(server)
    result = CliRunner().invoke(app, ["--presigned-downloads", str(MAX_PRESIGNED_SECONDS + 1)])
    assert result.exit_code != 0
    assert PRESIGNED_ENV in str(result.exception)
    assert CliRunner().invoke(app, ["--presigned-downloads", "-1"]).exit_code == 2


@pytest.mark.parametrize(("protocol", "nagle_off"), [(H11Protocol, 0), (NoDelayH11Protocol, 1)])
def test_connections_on_a_socket_bound_as_for_several_workers_turn_nagle_off(
    protocol: type[H11Protocol], nagle_off: int
) -> None:
    """uvicorn binds the socket itself for --workers > 1, without naming TCP, and asyncio then
    leaves Nagle on: each answer on a reused connection waited ~40 ms for a delayed ACK."""

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    config = uvicorn.Config(app, log_level="warning")
    config.load()
    state = ServerState()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as uvicorn's bind_socket
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    async def accepted_nodelay() -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: protocol(config, state, {}), sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        while not state.connections:
            await asyncio.sleep(0.01)
        (accepted,) = state.connections
        flag = accepted.transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        writer.close()
        server.close()
        return int(flag)

    assert asyncio.run(accepted_nodelay()) == nagle_off
