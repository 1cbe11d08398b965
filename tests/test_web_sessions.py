"""Web UI sign-in (issue 14, finding 11): opaque server-side sessions, CSRF on sign-in and
sign-out, lifetimes, trusted proxies, rate limits, and admins listing and ending sessions.

Each test runs a real ``clew server`` (uvicorn on 127.0.0.1, or ``TestClient`` over the real app
where a proxy's address must be named) over its own store: a SQLite directory, or PostgreSQL +
S3 under ``CLEW_TEST_BACKEND=postgres-s3``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from server_fixtures import RunningServer, server_store
from sqlalchemy import select
from tamper import execute_sql
from typer.testing import CliRunner

import clew
from clew.cli.main import app as cli
from clew.errors import InvalidInputError, PolicyError, TooManyAttemptsError
from clew.server.app import app_from_environment, create_app
from clew.service import audit
from clew.service.sessions import Lifetimes
from clew.store import schema

pytest_plugins = ("server_fixtures",)

SESSION = "clew_session"


def _login_form(browser: httpx.Client | TestClient) -> str:
    """Open the sign-in page as a browser does and return the form's CSRF token."""
    page = browser.get("/ui/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, "the sign-in form carries no CSRF token"
    return found.group(1)


def _sign_in(browser: httpx.Client | TestClient, token: str, **headers: str) -> httpx.Response:
    csrf = _login_form(browser)
    return browser.post("/ui/login", data={"token": token, "csrf": csrf}, headers=headers)


def _page_csrf(browser: httpx.Client) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', browser.get("/ui/models").text)
    assert found is not None
    return found.group(1)


def _browser(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30)


@contextlib.contextmanager
def _signed_in(server: RunningServer, user: str) -> Iterator[httpx.Client]:
    with _browser(server) as browser:
        response = _sign_in(browser, server.tokens[user])
        assert response.status_code == 303, response.text
        yield browser


def _session_rows(server: RunningServer) -> list[dict[str, object]]:
    with server.store.db.read() as connection:
        rows = connection.execute(select(schema.ui_sessions)).mappings().all()
    return [dict(row) for row in rows]


def test_the_cookie_holds_an_opaque_session_id_never_the_token(server: RunningServer) -> None:
    token = server.user("vera", "viewer")
    with _browser(server) as browser:
        response = _sign_in(browser, token)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "samesite=lax" in cookie.lower() and "httponly" in cookie.lower()
        assert "max-age=43200" in cookie.lower() and "path=/" in cookie.lower()
        session = browser.cookies[SESSION]
        assert token not in cookie and session != token
        assert "clew_token" not in browser.cookies
        assert "signed in as <strong>vera</strong>" in browser.get("/ui/models").text
    (row,) = _session_rows(server)
    assert row["secret_hash"] == hashlib.sha256(session.encode()).hexdigest()
    assert session not in str(row) and token not in str(row)
    assert row["user_name"] == "vera" and row["idle_ms"] == 30 * 60 * 1000


def test_logout_ends_the_session_on_the_server(server: RunningServer) -> None:
    server.user("vera", "viewer")
    with _signed_in(server, "vera") as browser:
        kept = browser.cookies[SESSION]
        out = browser.post("/ui/logout", data={"csrf": _page_csrf(browser)})
        assert out.status_code == 303 and SESSION not in browser.cookies
    with httpx.Client(base_url=server.url, cookies={SESSION: kept}) as replay:
        again = replay.get("/ui/models")
    assert again.status_code == 303 and again.headers["location"].startswith("/ui/login")
    assert [entry.action for entry in audit.entries(server.store, "user:vera", 10)] == [
        "session.close",
        "session.open",
        "token.create",
        "token.create",
        "user.create",
    ]


def test_logout_without_the_forms_csrf_token_is_refused(server: RunningServer) -> None:
    server.user("vera", "viewer")
    with _signed_in(server, "vera") as browser:
        forged = browser.post("/ui/logout")
        assert forged.status_code == 403
        assert "did not come from this clew" in forged.text
        assert browser.get("/ui/models").status_code == 200
    assert _session_rows(server)[0]["revoked_ms"] is None


def test_a_cross_site_sign_in_form_is_refused(server: RunningServer) -> None:
    """Login CSRF: another site's form posting the attacker's token into the victim's browser."""
    attacker = server.user("mallory", "viewer")
    with _browser(server) as attackers_browser:
        attackers_csrf = _login_form(attackers_browser)
    with _browser(server) as victim:
        for form in ({"token": attacker}, {"token": attacker, "csrf": attackers_csrf}):
            refused = victim.post("/ui/login", data=form)
            assert refused.status_code == 403, form
            assert "did not come from this clew" in refused.text
            assert SESSION not in victim.cookies
    assert _session_rows(server) == []


def test_idle_and_absolute_lifetimes_end_a_session(server: RunningServer) -> None:
    server.user("vera", "viewer")
    for column in ("last_seen_ms", "expires_ms"):
        with _signed_in(server, "vera") as browser:
            assert browser.get("/ui/models").status_code == 200
            hashed = hashlib.sha256(browser.cookies[SESSION].encode()).hexdigest()
            # As if the session had gone unused (or lived) past its lifetime.
            execute_sql(
                server.store,
                f"UPDATE ui_sessions SET {column} = {column} - 86400000 WHERE secret_hash = :h",
                h=hashed,
            )
            ended = browser.get("/ui/models")
            assert ended.status_code == 303 and ended.headers["location"].startswith("/ui/login")


def test_the_cookie_is_secure_only_behind_a_trusted_tls_proxy(tmp_path: Path) -> None:
    store, root = server_store(tmp_path)
    server = RunningServer("", store, root)
    token = server.user("vera", "viewer")
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    try:
        for trusted, secure in (("testclient", True), (None, False)):
            app = create_app(store, forwarded_allow_ips=trusted)
            with TestClient(app, follow_redirects=False) as browser:
                response = _sign_in(browser, token, **https)
                assert response.status_code == 303
                assert ("secure" in response.headers["set-cookie"].lower()) is secure
        clients = [row["client"] for row in _session_rows(server)]
        assert sorted(clients) == ["203.0.113.7", "testclient"]
    finally:
        store.close()


def test_bad_sign_ins_from_one_address_get_429(server: RunningServer) -> None:
    good = server.user("vera", "viewer")
    with _browser(server) as browser:
        for attempt in range(10):
            bad = _sign_in(browser, f"clew_not-a-token-{attempt}")
            assert bad.status_code == 401 and "not valid" in bad.text
        limited = _sign_in(browser, "clew_not-a-token-10")
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 300
        assert "too many sign-in attempts" in limited.text
        assert _sign_in(browser, good).status_code == 429
    assert _session_rows(server) == []


def test_bad_bearer_tokens_from_one_address_get_429(server: RunningServer) -> None:
    with server.http("clew_not-a-token") as http:
        statuses = [http.get("/api/v1/whoami").status_code for _ in range(10)]
        limited = http.get("/api/v1/whoami")
    assert statuses == [401] * 10
    assert limited.status_code == 429 and limited.json()["code"] == "too_many_attempts"
    assert int(limited.headers["retry-after"]) > 0
    sdk = clew.Client(server.url, token="clew_not-a-token")
    try:
        with pytest.raises(TooManyAttemptsError, match=r"wait .* s and retry") as refused:
            sdk.list_models()
        assert 0 < refused.value.retry_after_s <= int(limited.headers["retry-after"])
    finally:
        sdk.close()


def test_sign_ins_to_one_account_are_limited(server: RunningServer) -> None:
    server.user("vera", "viewer")
    for _ in range(10):
        with _signed_in(server, "vera"):
            pass
    with _browser(server) as browser:
        limited = _sign_in(browser, server.tokens["vera"])
    assert limited.status_code == 429
    assert "account &#39;vera&#39;" in limited.text


def test_admins_list_and_revoke_sessions_with_the_sdk_and_cli(server: RunningServer) -> None:
    admin = server.user("ada", "admin")
    server.user("vera", "viewer")
    remote = clew.Client(server.url, token=admin)
    viewer = clew.Client(server.url, token=server.tokens["vera"])
    with (
        _signed_in(server, "vera") as browser,
        contextlib.closing(remote),
        contextlib.closing(viewer),
    ):
        (listed,) = remote.sessions("vera")
        assert listed["user_name"] == "vera" and listed["client"] == "127.0.0.1"
        assert "secret_hash" not in listed
        with pytest.raises(PolicyError, match="needs the admin role"):
            viewer.sessions()
        env = {"CLEW_URI": server.url, "CLEW_TOKEN": admin, "COLUMNS": "200"}
        shown = CliRunner().invoke(cli, ["sessions", "list"], env=env)
        assert shown.exit_code == 0 and listed["id"] in shown.output, shown.output
        ended = CliRunner().invoke(cli, ["sessions", "revoke", listed["id"]], env=env)
        assert ended.exit_code == 0, ended.output
        assert f"ended vera's session {listed['id']}" in ended.output
        assert browser.get("/ui/models").status_code == 303
        assert remote.sessions() == []
        (old,) = remote.sessions(ended=True)
        assert old["revoked_by"] == "ada"
        again = CliRunner().invoke(cli, ["sessions", "revoke", listed["id"]], env=env)
        assert again.exit_code == 1 and "was already ended" in again.output


def test_the_embedded_sdk_lists_the_stores_sessions(server: RunningServer) -> None:
    server.user("vera", "viewer")
    with _signed_in(server, "vera") as browser:
        local = clew.connect(None if "postgresql" in server.store.db.url else str(server.root))
        try:
            (listed,) = local.sessions()
            assert local.revoke_session(listed["id"])["revoked_ms"] is not None
        finally:
            local.close()
        assert browser.get("/ui/models").status_code == 303


def test_session_lifetimes_are_configurable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, root = server_store(tmp_path)
    server = RunningServer("", store, root)
    token = server.user("vera", "viewer")
    try:
        app = create_app(store, session_lifetimes=Lifetimes(idle_s=60, absolute_s=120))
        with TestClient(app, follow_redirects=False) as browser:
            assert "max-age=120" in _sign_in(browser, token).headers["set-cookie"].lower()
        (row,) = _session_rows(server)
        assert row["idle_ms"] == 60_000 and row["expires_ms"] - row["created_ms"] == 120_000
        monkeypatch.setenv("CLEW_SESSION_HOURS", "half a day")
        with pytest.raises(InvalidInputError, match="CLEW_SESSION_HOURS='half a day' must be"):
            app_from_environment()
    finally:
        store.close()
