"""A real ``clew server`` (uvicorn on a free 127.0.0.1 port, in a thread) for the server tests.

Imported by tests/test_server*.py, test_http_client*.py and test_attacks*.py; the server's
store is its own directory, separate from the client's, so nothing can pass between them
except over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import clew
from clew.server.app import create_app
from clew.server.http_protocol import NoDelayH11Protocol
from clew.service import accounts
from clew.store.location import Store, open_store

AsUser = Callable[..., clew.Client]
"""The ``as_user`` fixture: ``as_user("bob", role="approver")`` is a client acting as bob."""


@dataclass
class RunningServer:
    url: str
    store: Store
    root: Path
    tokens: dict[str, str] = field(default_factory=dict)
    signing: dict[str, str] = field(default_factory=dict)

    def user(self, name: str, role: str = "contributor") -> str:
        """Create ``name`` with ``role`` and return a fresh API token for them (their signing
        token, for approvals, is kept in ``signing``)."""
        accounts.create_user(self.store, name, role, actor="test-admin")
        token = accounts.create_token(self.store, name, actor="test-admin").secret
        self.tokens[name] = token
        self.signing[name] = accounts.create_token(
            self.store, name, actor="test-admin", purpose="signing"
        ).secret
        return token

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def serve(store: Store, root: Path, **options: object) -> Iterator[RunningServer]:
    app = create_app(store, **options)  # type: ignore[arg-type]
    try:
        for url in run_uvicorn(app):
            yield RunningServer(url, store, root)
    finally:
        store.close()


class _PromptServer(uvicorn.Server):
    """Stops as soon as asked: uvicorn's own loop looks at ``should_exit`` every 0.1 s, which
    every test that starts a server paid for again at its end."""

    _loop: asyncio.AbstractEventLoop | None = None
    _stopping: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.1)

    def stop(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)


def run_uvicorn(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` on a free 127.0.0.1 port in a thread; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # clew server's own protocol: on a socket bound like this one, plain h11 left Nagle on and
    # each keep-alive response waited ~40 ms for the client's delayed ACK.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", http=NoDelayH11Protocol)
    server = _PromptServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the clew server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        thread.join(10)
        sock.close()


class SwitchedApp:
    """One long-lived server process-wide, each test's own store behind it: the clew app is
    built for the current store on its first request, so a test that never calls the server
    pays only for its store (starting and stopping uvicorn per test doubled the remote pass)."""

    def __init__(self) -> None:
        self._store: Store | None = None
        self._app: Any = None

    def use(self, store: Store | None) -> None:
        self._store, self._app = store, None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            if self._store is None:
                raise RuntimeError("no test store is being served")
            self._app = create_app(self._store)
        await self._app(scope, receive, send)


def wait_until_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll a ``clew server`` subprocess's readiness route until it answers 200; fail the test
    if ``deadline`` (``time.monotonic()``) passes or the process exits first."""
    while True:
        try:
            if httpx.get(f"{url}/api/v1/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            pytest.fail(f"the clew server at {url} did not start")
        time.sleep(0.2)


def server_store(tmp_path: Path, name: str = "server-store") -> tuple[Store, Path]:
    """The server's store: a fresh SQLite directory, or under ``CLEW_TEST_BACKEND=postgres-s3``
    the fresh PostgreSQL database and S3 prefix conftest put in ``CLEW_URI``/``CLEW_ARTIFACTS``
    (once ``CLEW_URI`` is the test server's address, another server gets its own directory)."""
    if os.environ.get("CLEW_URI", "").startswith("postgresql"):
        store = open_store()
        return store, store.home
    return open_store(tmp_path / name), tmp_path / name


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    yield from serve(*server_store(tmp_path))


REMOTE = os.environ.get("CLEW_TEST_CLIENT") == "remote"
CLIENTS = ["remote"] if REMOTE else ["embedded", "remote"]


@pytest.fixture(params=CLIENTS)
def sdk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[clew.Client]:
    """The same SDK over an embedded store and over a server: tests using it must pass on both.

    The remote user is ``alice``, the same name the embedded store takes from ``CLEW_USER``.
    Under ``CLEW_TEST_CLIENT=remote`` every client is remote already: ``sdk`` is ``client``.
    """
    if request.param == "embedded":
        yield clew.connect()
        return
    if REMOTE:
        yield request.getfixturevalue("client")
        return
    for running in serve(*server_store(tmp_path)):
        client = clew.connect(running.url, token=running.user("alice"))
        yield client
        client.close()
