"""The web UI inside ``clew server``: token login, roles on every page, approvals as e-signatures.

One real server per module (and xdist worker): ``create_app`` under uvicorn on a free
127.0.0.1 port, over a store holding real scikit-learn runs and three registered versions
(made by alice, see ``test_ui.populate``). Users: vera (viewer), carl (contributor), bob
(approver, not the creator) and alice (approver, the versions' creator). HTTP-level checks use
httpx against that server; browser checks drive Debian's Chromium through Playwright and keep
screenshots in test-artifacts/screenshots/server-*.png.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from browser_fixtures import screenshot
from fastapi import APIRouter
from fastapi.testclient import TestClient
from server_fixtures import RunningServer, serve
from test_ui import (
    HTML_DESCRIPTION,
    HTML_RUN_NAME,
    MODEL,
    Populated,
    populate,
)

from clew.server.app import create_app
from clew.server.permissions import check_routes
from clew.server.web_sessions import SESSION_COOKIE
from clew.service import accounts, audit, sessions
from clew.service.promotion import PromotionService
from clew.store.location import open_store

pytest_plugins = ("browser_fixtures",)

UI_SECRET = b"test-ui-secret-for-this-module-only"
ROLES = {"vera": "viewer", "carl": "contributor", "bob": "approver", "alice": "approver"}


@dataclass
class Deployment:
    """The running server, what populated its store, and each user's API and signing tokens."""

    server: RunningServer
    made: Populated
    api: dict[str, str] = field(default_factory=dict)
    signing: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def status(self, version: int) -> dict[str, Any]:
        return PromotionService(self.server.store).version_status(f"{MODEL}/{version}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("ui-server")
    made = populate(root)
    made.client.close()
    store = open_store(made.home)
    for running in serve(store, root, ui_secret=UI_SECRET):
        found = Deployment(running, made)
        for user, role in ROLES.items():
            found.api[user] = running.user(user, role)
            issued = accounts.create_token(store, user, "test-admin", purpose=accounts.SIGNING)
            found.signing[user] = issued.secret
        yield found


# --- HTTP-level checks against the real server --------------------------------------------


def _session(deployment: Deployment, token: str) -> str:
    """A session opened for ``token`` by the service the login page uses (signing in through
    the page for every check would trip the per-account sign-in limit)."""
    store = deployment.server.store
    principal = accounts.authenticate(store, token)
    opened = sessions.open_session(
        store, principal, client="test", user_agent="httpx", lifetimes=sessions.Lifetimes()
    )
    return opened.secret


def _browser(deployment: Deployment, user: str | None = None) -> httpx.Client:
    """An httpx client that behaves like a signed-in browser (a session id in the cookie)."""
    cookies = {SESSION_COOKIE: _session(deployment, deployment.api[user])} if user else {}
    return httpx.Client(base_url=deployment.url, cookies=cookies, timeout=30)


def _csrf(browser: httpx.Client) -> str:
    """The CSRF token the UI puts in this browser session's forms (an attacker can not compute
    it without the server's secret and the session id; the test knows both so it can post as
    users who see no form)."""
    binding = f"session:{browser.cookies[SESSION_COOKIE]}"
    return hmac.new(UI_SECRET, binding.encode(), hashlib.sha256).hexdigest()[:40]


def _decide(client: httpx.Client, version: int, **fields: str) -> httpx.Response:
    form = {"decision": "approve", "comment": "checked the holdout", **fields}
    return client.post(f"/ui/models/{MODEL}/versions/{version}/decide", data=form)


def test_the_server_root_redirects_to_the_ui(deployment: Deployment) -> None:
    with _browser(deployment) as anonymous:
        response = anonymous.get("/")
        landed = anonymous.get("/", follow_redirects=True)
    assert response.status_code == 307 and response.headers["location"] == "/ui/"
    assert landed.status_code == 200 and str(landed.url).startswith(f"{deployment.url}/ui/login")
    with _browser(deployment, "vera") as viewer:
        signed_in = viewer.get("/", follow_redirects=True)
    # /ui/ itself sends a signed-in user on to the model inventory.
    assert signed_in.status_code == 200 and str(signed_in.url) == f"{deployment.url}/ui/models"


def test_unauthenticated_pages_redirect_to_login(deployment: Deployment) -> None:
    with _browser(deployment) as anonymous:
        for path in ("/ui/", "/ui/models", f"/ui/models/{MODEL}/versions/1", "/ui/audit"):
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/ui/login?next={path.replace('/', '%2F')}"
        assert anonymous.get("/ui/login").status_code == 200
        assert anonymous.get("/ui/static/clew.css").status_code == 200
        refused = _decide(anonymous, 3, csrf="x", signing_token=deployment.signing["bob"])
        assert refused.status_code == 303
    assert deployment.status(3)["approvals"] == 0


def _login_csrf(client: httpx.Client | TestClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/login").text)
    assert found is not None
    return found.group(1)


def test_login_sets_a_lax_httponly_session_cookie_and_logout_ends_it(
    deployment: Deployment,
) -> None:
    with _browser(deployment) as client:
        form = {"token": deployment.signing["vera"], "csrf": _login_csrf(client)}
        bad = client.post("/ui/login", data=form)
        assert bad.status_code == 401
        assert "not valid" in bad.text
        form = {"token": deployment.api["vera"], "next": "/ui/audit", "csrf": _login_csrf(client)}
        good = client.post("/ui/login", data=form)
        assert good.status_code == 303
        assert good.headers["location"] == "/ui/audit"
        cookie = good.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        assert "secure" not in cookie and deployment.api["vera"].lower() not in cookie
        assert "signed in as <strong>vera</strong>" in client.get("/ui/audit").text
        out = client.post("/ui/logout", data={"csrf": _csrf(client)})
        assert out.status_code == 303
        assert "max-age=0" in out.headers["set-cookie"].lower()
        assert SESSION_COOKIE not in client.cookies
        assert client.get("/ui/models").status_code == 303


def test_revoking_the_sign_in_token_ends_its_sessions(deployment: Deployment) -> None:
    issued = accounts.create_token(deployment.server.store, "vera", "test-admin")
    cookies = {SESSION_COOKIE: _session(deployment, issued.secret)}
    with httpx.Client(base_url=deployment.url, cookies=cookies, timeout=30) as client:
        assert client.get("/ui/models").status_code == 200
        accounts.revoke_token(deployment.server.store, issued.id, "test-admin")
        response = client.get("/ui/models")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login")
        bearer = client.get("/ui/models", headers={"Authorization": f"Bearer {issued.secret}"})
        assert bearer.status_code == 401
        assert "was revoked" in bearer.text


def test_out_of_range_numbers_are_refused_not_a_server_error(deployment: Deployment) -> None:
    """Found by the OpenAPI fuzzer: a version beyond SQLite's integers used to answer 500."""
    with _browser(deployment, "vera") as vera:
        huge = vera.get(f"/ui/models/{MODEL}/versions/81014475433430230153289866936320")
        assert huge.status_code == 422
        assert vera.get("/ui/models", params={"offset": 2**70}).status_code == 422
        assert vera.get("/ui/audit", params={"before": 2**70}).status_code == 422
    paths = create_app(deployment.server.store).openapi()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


def test_cookie_is_secure_over_https(deployment: Deployment) -> None:
    app = create_app(deployment.server.store)
    https = TestClient(app, base_url="https://clew.example", follow_redirects=False)
    form = {"token": deployment.api["vera"], "csrf": _login_csrf(https)}
    response = https.post("/ui/login", data=form)
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


def test_viewer_and_contributor_cannot_approve(deployment: Deployment) -> None:
    for user, role in (("vera", "viewer"), ("carl", "contributor")):
        with _browser(deployment, user) as client:
            page = client.get(f"/ui/models/{MODEL}/versions/3").text
            assert 'id="decide-form"' not in page and 'id="promote-form"' not in page
            assert f"user &#39;{user}&#39; is a {role}" in page
            assert "needs the approver role" in page
            signing = deployment.signing[user]
            refused = _decide(client, 3, csrf=_csrf(client), signing_token=signing)
            assert refused.status_code == 403
            assert "needs the approver role" in refused.text
    assert deployment.status(3)["approvals"] == 0


def test_approval_needs_the_approvers_own_signing_token(deployment: Deployment) -> None:
    with _browser(deployment, "bob") as bob:
        csrf = _csrf(bob)
        missing = _decide(bob, 3, csrf=csrf)
        assert missing.status_code == 401
        assert "electronic signature" in missing.text
        api_token = _decide(bob, 3, csrf=csrf, signing_token=deployment.api["bob"])
        assert api_token.status_code == 401
        assert "use your signing token" in api_token.text
        someone_else = _decide(bob, 3, csrf=csrf, signing_token=deployment.signing["alice"])
        assert someone_else.status_code == 401
        assert "belongs to another user" in someone_else.text
        no_csrf = _decide(bob, 3, signing_token=deployment.signing["bob"])
        assert no_csrf.status_code == 403
        assert "did not come from this clew" in no_csrf.text
    assert deployment.status(3)["approvals"] == 0


def test_a_new_alias_needs_the_new_alias_box(deployment: Deployment) -> None:
    path = f"/ui/models/{MODEL}/versions/3/promote"
    with _browser(deployment, "bob") as bob:
        form = {"alias": "canary", "comment": "shadow traffic", "csrf": _csrf(bob)}
        refused = bob.post(path, data=form)
        assert refused.status_code == 200, refused.text
        assert "has no alias &#39;canary&#39; yet" in refused.text and "--new-alias" in refused.text
        assert 'name="new_alias"' in refused.text
        assert "canary" not in deployment.status(3)["aliases"]
        created = bob.post(path, data={**form, "new_alias": "1"})
        assert created.is_redirect, created.text
    assert "canary" in deployment.status(3)["aliases"]


def test_claimed_names_are_ignored(deployment: Deployment) -> None:
    """Only the token decides who acts: a ``CLEW_USER``-style header or form field does not."""
    with _browser(deployment, "vera") as vera:
        vera.headers["X-Clew-User"] = "bob"
        page = vera.get(f"/ui/models/{MODEL}/versions/3", params={"actor": "bob"}).text
        assert "signed in as <strong>vera</strong>" in page
        assert 'id="decide-form"' not in page


def test_a_ui_route_without_a_permission_refuses_to_start(deployment: Deployment) -> None:
    app = create_app(deployment.server.store)
    extra = APIRouter(prefix="/ui")

    @extra.get("/secret", name="ui.secret")
    def secret() -> str:
        """A page someone forgot to declare in ROUTE_PERMISSIONS."""
        return "secret"

    app.include_router(extra)
    with pytest.raises(RuntimeError, match=r"/ui routes without a ROUTE_PERMISSIONS entry.*"):
        check_routes(app)
    with _browser(deployment, "alice") as alice:
        response = TestClient(app, cookies=dict(alice.cookies)).get("/ui/secret")
    assert response.status_code == 403
    assert "no permission rule" in response.text


# --- in a real browser ---------------------------------------------------------------------


def _shot(tab: Any, name: str) -> None:
    screenshot(tab, f"server-{name}")


def _sign_in(tab: Any, deployment: Deployment, user: str, path: str) -> None:
    """Open ``path`` signed out, land on the login page, sign in and come back to ``path``."""
    tab.goto(deployment.url + path)
    assert "/ui/login" in tab.url
    tab.fill("input[name=token]", deployment.api[user])
    tab.click("form.stack button[type=submit]")
    tab.wait_for_url(re.compile(re.escape(deployment.url + path.split("?")[0])))
    assert tab.locator(".who strong").text_content() == user


def test_viewer_reads_every_page_but_cannot_approve(page: Any, deployment: Deployment) -> None:
    runs = deployment.made.runs
    _sign_in(page, deployment, "vera", "/ui/models")
    _shot(page, "login-done")
    pages = {
        "models": "/ui/models",
        "model": f"/ui/models/{MODEL}",
        "version": f"/ui/models/{MODEL}/versions/3",
        "experiments": "/ui/experiments",
        "compare": f"/ui/compare?run={runs['rf-3']}&run={runs['rf-30']}",
        "run": f"/ui/runs/{runs['rf-30']}",
        "audit": "/ui/audit",
        "lineage": f"/ui/lineage?ref={MODEL}/3",
        "prediction": f"/ui/predictions/{deployment.made.prediction}",
    }
    for name, path in pages.items():
        response = page.goto(deployment.url + path)
        assert response.status == 200, name
        page.wait_for_load_state("networkidle")
        _shot(page, name)
    page.goto(deployment.url + f"/ui/models/{MODEL}/versions/3")
    page.locator("#integrity").get_by_text("digest verified").wait_for()
    assert page.locator("#decide-form").count() == 0
    assert "needs the approver role" in page.locator("#approve-refusal").text_content()
    page.goto(deployment.url + "/ui/audit")
    page.locator("#chain-status").get_by_text("chain verified").wait_for()
    page.goto(deployment.url + f"/ui/lineage?ref={MODEL}/3")
    page.locator("#lineage-graph .node").first.wait_for()
    names = set(page.locator("#lineage-graph .node .node-name").all_text_contents())
    assert {"iris-rf", "rf-30", "iris-train"} <= names


def test_second_approver_signs_and_is_recorded(page: Any, deployment: Deployment) -> None:
    path = f"/ui/models/{MODEL}/versions/2"
    _sign_in(page, deployment, "bob", path)
    signing = page.locator("#decide-form input[name=signing_token]")
    assert signing.get_attribute("type") == "password"
    page.fill("#decide-form textarea[name=comment]", "validated on the holdout split")
    signing.fill(deployment.signing["bob"])
    page.click("#decide-form button[value=approve]")
    assert "approved by bob" in page.locator(".notice").text_content()
    assert "validated on the holdout split" in page.locator("#history-table").text_content()
    assert deployment.signing["bob"] not in page.content()
    _shot(page, "version-approved")
    assert deployment.status(2)["approved_by"] == ["bob"]
    newest = audit.entries(deployment.server.store, limit=1)[0]
    assert (newest.actor, newest.action) == ("bob", "model.approved"), newest


def test_creator_is_refused_with_the_separation_of_duties_reason(
    page: Any, deployment: Deployment
) -> None:
    _sign_in(page, deployment, "alice", f"/ui/models/{MODEL}/versions/1")
    page.fill("#decide-form textarea[name=comment]", "I checked my own work")
    page.fill("#decide-form input[name=signing_token]", deployment.signing["alice"])
    page.click("#decide-form button[value=approve]")
    refusal = page.locator("#refusal").text_content()
    assert "separation of duties" in refusal and "alice" in refusal
    _shot(page, "version-refused")
    assert "alice" not in deployment.status(1)["approved_by"]


def test_user_html_is_text_and_logout_signs_out(page: Any, deployment: Deployment) -> None:
    _sign_in(page, deployment, "carl", f"/ui/models/{MODEL}/versions/1")
    lead = page.locator("p.lead")
    assert lead.text_content() == HTML_DESCRIPTION
    assert lead.locator("b").count() == 0
    page.goto(deployment.url + "/ui/experiments")
    table = page.locator("#runs-table")
    assert table.get_by_text(HTML_RUN_NAME, exact=True).count() == 1
    assert table.locator("img").count() == 0
    assert page.title() != "pwned"
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        (SESSION_COOKIE, True, "Lax")
    ]
    assert page.evaluate("document.cookie") == ""
    page.click("header form button.link")
    page.wait_for_url(re.compile(r"/ui/login"))
    assert SESSION_COOKIE not in {cookie["name"] for cookie in page.context.cookies()}
    page.goto(deployment.url + "/ui/models")
    assert "/ui/login" in page.url


def test_sign_out_in_a_browser_ends_the_session_on_the_server(
    page: Any, deployment: Deployment
) -> None:
    _sign_in(page, deployment, "vera", "/ui/audit")
    (session,) = [c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    page.click("header form button.link")
    page.wait_for_url(re.compile(r"/ui/login"))
    _shot(page, "signed-out")
    replay = httpx.Client(base_url=deployment.url, cookies={SESSION_COOKIE: session})
    with replay:
        assert replay.get("/ui/audit").status_code == 303


def test_another_sites_sign_in_form_is_refused_in_a_browser(
    browser: Any, deployment: Deployment
) -> None:
    """Login CSRF: a page elsewhere posts the attacker's token (and the attacker's own form
    token) to /ui/login from the victim's browser, which has seen the login page before.
    (Its own tab: the refusal is a 403 page, which Chromium logs as a console error.)"""
    with _browser(deployment) as attackers_browser:
        attackers_csrf = _login_csrf(attackers_browser)
    context = browser.new_context()
    page = context.new_page()
    page.goto(deployment.url + "/ui/login")
    page.goto("about:blank")
    page.set_content(
        f'<form method="post" action="{deployment.url}/ui/login">'
        f'<input name="token" value="{deployment.api["carl"]}">'
        f'<input name="csrf" value="{attackers_csrf}"></form>'
    )
    with page.expect_navigation():
        page.evaluate("document.forms[0].submit()")
    assert "did not come from this clew" in page.locator("p.problem").text_content()
    assert SESSION_COOKIE not in {cookie["name"] for cookie in context.cookies()}
    _shot(page, "cross-site-login-refused")
    context.close()
