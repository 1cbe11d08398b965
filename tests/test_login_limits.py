"""Rate limits on sign-ins and token checks hold across server processes (issue 14): the counts
live in the store, so two servers on one store, or a restarted one, share one limit.

Two real uvicorn servers, each with its own app (and so its own ``LoginLimits``), over one
store: a SQLite directory, or PostgreSQL + S3 under ``CLEW_TEST_BACKEND=postgres-s3``.
tests/test_two_servers.py checks the same with two ``clew server`` processes on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from server_fixtures import RunningServer, run_uvicorn, server_store
from test_web_sessions import _sign_in

from clew.server.app import create_app
from clew.server.login_limits import MAX_FAILURES_PER_ADDRESS, REFRESH_S, WINDOW_S

BAD = {"Authorization": "Bearer clew_not-a-token"}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[RunningServer]]:
    """Two servers, two apps, one store."""
    store, root = server_store(tmp_path)
    with ExitStack() as stack:
        servers = []
        for _ in range(2):
            url = stack.enter_context(_serving(create_app(store)))
            servers.append(RunningServer(url, store, root))
        yield servers
    store.close()


_serving = contextlib.contextmanager(run_uvicorn)


def _whoami(server: RunningServer, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/whoami", headers=headers, timeout=30)


def _until_refused(server: RunningServer, headers: dict[str, str]) -> httpx.Response:
    """The server's answer once its copy of the refused keys is fresh (read every second)."""
    deadline = time.monotonic() + 30 * REFRESH_S
    while (answer := _whoami(server, headers)).status_code != 429 and time.monotonic() < deadline:
        time.sleep(REFRESH_S / 4)
    return answer


def test_failed_token_checks_spread_over_two_servers_share_one_limit(
    pair: list[RunningServer],
) -> None:
    first, second = pair
    token = first.user("vera", "viewer")
    statuses = [_whoami(pair[n % 2], BAD).status_code for n in range(MAX_FAILURES_PER_ADDRESS)]
    assert statuses == [401] * MAX_FAILURES_PER_ADDRESS  # five on each server
    for server in (second, first):  # each refuses the next try: the count is the store's
        refused = _whoami(server, BAD)
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_attempts"
        assert 0 < int(refused.headers["retry-after"]) <= WINDOW_S
        assert (
            "too many sign-in attempts or failed token checks for address 127.0.0.1"
            in (refused.json()["message"])
        )
    valid = {"Authorization": f"Bearer {token}"}
    for server in pair:
        assert _until_refused(server, valid).status_code == 429  # no check past the limit


def test_sign_ins_to_one_account_spread_over_two_servers_share_one_limit(
    pair: list[RunningServer],
) -> None:
    token = pair[0].user("vera", "viewer")
    for attempt in range(10):
        with httpx.Client(base_url=pair[attempt % 2].url, timeout=30) as browser:
            assert _sign_in(browser, token).status_code == 303
    for server in pair:
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            limited = _sign_in(browser, token)
        assert limited.status_code == 429 and "account &#39;vera&#39;" in limited.text


def test_a_restarted_server_keeps_counting(tmp_path: Path) -> None:
    store, root = server_store(tmp_path)
    try:
        with _serving(create_app(store)) as url:
            server = RunningServer(url, store, root)
            assert {_whoami(server, BAD).status_code for _ in range(10)} == {401}
        with _serving(create_app(store)) as url:  # a deploy: a new process, a new app
            again = _whoami(RunningServer(url, store, root), BAD)
        assert again.status_code == 429
    finally:
        store.close()
