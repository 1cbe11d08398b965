"""The web UI against a real store: HTTP-level checks, then Chromium driving real servers.

One store per test module (and xdist worker) holds real scikit-learn runs in a real git repo,
registered versions and a run whose name is an HTML payload. Browser tests talk to ``clew ui``
servers started as separate processes, one acting as the versions' creator (alice) and one as
a second person (bob), so separation of duties is exercised exactly as a user would meet it.
Screenshots of every page land in test-artifacts/screenshots/ for reviewers.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from browser_fixtures import CHROMIUM, screenshot
from conftest import free_port, require_backend, run_git
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from tamper import corrupt_blob

import clew
from clew.client import provenance
from clew.errors import AuthenticationError, PolicyError
from clew.server.permissions import ROUTE_PERMISSIONS
from clew.server.ui import create_ui_app, create_ui_router
from clew.server.ui.session import cookie_actor
from clew.server.web_sessions import SESSION_COOKIE
from clew.service.container import ServiceContainer
from clew.service.promotion import PromotionService
from clew.service.registry import RegistryService
from clew.store.location import Store

pytest_plugins = ("browser_fixtures",)

HTML_RUN_NAME = '<img src=x onerror="document.title=`pwned`">'
HTML_TAG = "<script>document.title='pwned'</script>"
HTML_DESCRIPTION = "Iris <b>species</b> classifier"
MODEL = "iris-classifier"


@dataclass
class Populated:
    home: Path
    client: clew.Client
    runs: dict[str, str] = field(default_factory=dict)
    prediction: str = ""

    @property
    def store(self) -> Store:
        return self.client.store


def _as_user(user: str) -> Any:
    patch = pytest.MonkeyPatch()
    patch.setenv("CLEW_USER", user)
    return patch


def populate(root: Path) -> Populated:
    """alice prepares iris, trains three forests and registers three versions."""
    repo = root / "repo"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('train')\n")
    run_git(repo, "add", "train.py")
    run_git(repo, "commit", "-q", "-m", "train")
    run_git(repo, "remote", "add", "origin", "https://github.com/acme/iris.git")
    patch = _as_user("alice")
    patch.chdir(repo)
    provenance.refresh()
    try:
        made = Populated(root / "home", clew.Client(str(root / "home")))
        _train(made)
    finally:
        patch.undo()
        provenance.refresh()
    return made


def _train(made: Populated) -> None:
    client = made.client
    frame = load_iris(as_frame=True).frame
    with client.start_run("iris", "prepare", kind="processing") as prep:
        prep.log_input(frame, name="iris-raw")
        train, test = train_test_split(frame, test_size=0.3, random_state=0)
        prep.log_output(train, name="iris-train")
        prep.log_output(test, name="iris-test")
    made.runs["prepare"] = prep.id
    features, target = train.drop(columns="target"), train["target"]
    for trees in (3, 10, 30):
        params = {"n_estimators": trees, "max_depth": 3}
        with client.start_run("iris", f"rf-{trees}", params=params, tags={"note": HTML_TAG}) as run:
            run.log_input(train, name="iris-train")
            model = RandomForestClassifier(random_state=0, **params).fit(features, target)
            for step in range(15):
                run.log_metric("loss", 1 / (step + 1) + trees / 1000, step=step)
            accuracy = model.score(test.drop(columns="target"), test["target"])
            run.log_metric("accuracy", float(accuracy))
            run.log_model(model, "iris-rf")
        made.runs[f"rf-{trees}"] = run.id
    with client.start_run("iris", HTML_RUN_NAME) as odd:
        odd.log_metric("accuracy", 0.5)
    made.runs["html"] = odd.id
    for trees in (3, 10, 30):
        client.register_model(
            f"run:{made.runs[f'rf-{trees}']}",
            MODEL,
            description=HTML_DESCRIPTION,
            owner="alice",
            risk_tier="high",
        )
    loaded = client.load_model(f"{MODEL}/3")
    _, predicted = loaded.predict_with_ids(test.drop(columns="target").head(5))
    client.flush_captures()
    made.prediction = predicted[0]


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    made = populate(tmp_path_factory.mktemp("ui-store"))
    yield made
    made.client.close()


# --- HTTP-level checks (no browser) -------------------------------------------------------


@pytest.fixture
def http(populated: Populated, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("CLEW_USER", "carol")
    return TestClient(create_ui_app(populated.store), base_url="http://127.0.0.1")


def test_every_route_declares_a_permission(populated: Populated) -> None:
    router = create_ui_router(lambda: ServiceContainer(populated.store), lambda: "carol")
    names = {route.name for route in router.routes}
    assert names == set(ROUTE_PERMISSIONS)


def test_pages_render_the_store(http: TestClient, populated: Populated) -> None:
    models = http.get("/ui/models")
    assert models.status_code == 200
    assert MODEL in models.text and "v3" in models.text
    version = http.get(f"/ui/models/{MODEL}/versions/2")
    assert "iris-train" in version.text
    assert "https://github.com/acme/iris/tree/" in version.text
    runs = http.get("/ui/experiments", params={"filter": "metrics.accuracy > 0.6"})
    assert "rf-30" in runs.text and "prepare" not in runs.text
    assert "Content-Security-Policy" in runs.headers


def test_bad_filter_is_explained_not_a_crash(http: TestClient) -> None:
    page = http.get("/ui/experiments", params={"filter": "metrics.accuracy >> 1"})
    assert page.status_code == 200
    assert "invalid filter" in page.text


def test_unknown_model_is_a_404_page(http: TestClient) -> None:
    page = http.get("/ui/models/no-such-model")
    assert page.status_code == 404
    assert "is not registered" in page.text


def test_form_without_csrf_token_changes_nothing(http: TestClient, populated: Populated) -> None:
    response = http.post(
        f"/ui/models/{MODEL}/versions/1/decide",
        data={"decision": "approve", "comment": "looks fine"},
    )
    assert response.status_code == 403
    assert PromotionService(populated.store).version_status(f"{MODEL}/1")["approvals"] == 0


def test_foreign_host_header_is_refused(populated: Populated) -> None:
    app = create_ui_app(populated.store)
    response = TestClient(app, base_url="http://evil.example").get("/ui/models")
    assert response.status_code == 400


def test_static_files_come_only_from_the_allow_list(http: TestClient) -> None:
    assert http.get("/ui/static/graph.js").status_code == 200
    assert http.get("/ui/static/pages.py").status_code == 404
    assert http.get("/ui/static/..%2Fpages.py").status_code == 404


def test_audit_page_reports_a_broken_chain(populated: Populated, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(populated.home, copy)
    with sqlite3.connect(copy / "clew.db") as database:
        database.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    client = clew.Client(str(copy))
    try:
        http = TestClient(create_ui_app(client.store), base_url="http://127.0.0.1")
        verdict = http.get("/ui/audit/verify.json").json()
    finally:
        client.close()
    assert verdict["ok"] is False
    assert verdict["broken_seq"] == 3


def test_prediction_page_tells_verified_not_checkable_and_failed_apart(
    http: TestClient, populated: Populated, tmp_path: Path
) -> None:
    page = http.get(f"/ui/predictions/{populated.prediction}")
    assert 'id="trace-outcome">every step verified<' in page.text
    graph = http.get(f"/ui/predictions/{populated.prediction}/graph.json").json()
    assert {node["outcome"] for node in graph["nodes"] if "outcome" in node} == {"verified"}

    client = clew.Client(str(tmp_path / "by-reference"))
    try:
        prediction = _predict_from_a_source_by_reference(client)
        ui = TestClient(create_ui_app(client.store), base_url="http://127.0.0.1")
        page = ui.get(f"/ui/predictions/{prediction}")
        assert 'id="trace-outcome">not every step checkable<' in page.text
        assert page.text.count("outcome-not-checkable") == 1
        assert "outcome-failed" not in page.text
        nodes = ui.get(f"/ui/predictions/{prediction}/graph.json").json()["nodes"]
        source = next(node for node in nodes if node["type"] == "data_source")
        assert source["outcome"] == "not_checkable" and source["verified"] is False
        version = client.get_version("by-reference/1")
        corrupt_blob(
            client.store.blobs, client.store.blobs.read_manifest(version.digest)["model.pkl"]
        )
        page = ui.get(f"/ui/predictions/{prediction}")
        assert 'id="trace-outcome">a step failed<' in page.text
        assert page.text.count("outcome-failed") == 1
    finally:
        client.close()


def _predict_from_a_source_by_reference(client: clew.Client) -> str:
    frame = load_iris(as_frame=True).frame
    with client.start_run("iris", "from-s3") as run:
        run.log_input(clew.data_source("s3://acme-raw/iris.csv", name="iris-s3"))
        model = RandomForestClassifier(n_estimators=3, random_state=0)
        model.fit(frame.drop(columns="target"), frame["target"])
        run.log_model(model, "iris-rf")
    client.register_model(f"run:{run.id}", "by-reference")
    loaded = client.load_model("by-reference/1")
    _, predicted = loaded.predict_with_ids(frame.drop(columns="target").head(2))
    client.flush_captures()
    return str(predicted[0])


def test_inventory_pages_and_sorts_many_models(populated: Populated, tmp_path: Path) -> None:
    client = clew.Client(str(tmp_path / "many"))
    try:
        registry = RegistryService(client.store)
        for number in range(120):
            registry.create_model(f"model-{number:03d}", "alice", risk_tier="low")
        http = TestClient(create_ui_app(client.store), base_url="http://127.0.0.1")
        first = http.get("/ui/models").text
        assert "120 models" in first and "model-000" in first and "model-050" not in first
        assert "offset=50" in first
        last = http.get("/ui/models", params={"sort": "name", "desc": "true"}).text
        assert last.index("model-119") < last.index("model-118")
        filtered = http.get("/ui/models", params={"q": "model-11"}).text
        assert "10 models" in filtered
    finally:
        client.close()


@dataclass
class TableSessions:
    """A ``SessionGate`` over two dicts, as an app embedding the router might write one."""

    tokens: dict[str, str]
    open_sessions: dict[str, str] = field(default_factory=dict)
    lifetime_s: int = 3600

    def open(self, request: Request, token: str) -> str:
        if token not in self.tokens:
            raise AuthenticationError("unknown token")
        session = f"session-{len(self.open_sessions)}"
        self.open_sessions[session] = self.tokens[token]
        return session

    def close(self, request: Request, session: str) -> None:
        self.open_sessions.pop(session, None)


def _server_mode_app(populated: Populated, roles: dict[str, str]) -> FastAPI:
    """The router as a server would mount it: token login, roles from a table."""
    tokens = {f"token-{user}": user for user in roles}
    gate = TableSessions(tokens)

    def authorize(actor: str, permission: str) -> None:
        allowed = {"viewer": {"read"}, "approver": {"read", "approve", "promote"}}
        if permission not in allowed[roles[actor]]:
            raise PolicyError(f"{actor!r} is a {roles[actor]} and may not {permission}.")

    services = ServiceContainer(populated.store)
    app = FastAPI()
    app.include_router(
        create_ui_router(
            lambda: services,
            cookie_actor(gate.open_sessions.get),
            authorize=authorize,
            sessions=gate,
        )
    )
    return app


def test_server_mode_needs_a_token_and_respects_roles(populated: Populated) -> None:
    app = _server_mode_app(populated, {"vera": "viewer", "bob": "approver"})
    browser = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    assert browser.get("/ui/models").headers["location"].startswith("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/ui/login").text)
    assert csrf is not None
    refused = browser.post("/ui/login", data={"token": "wrong", "csrf": csrf.group(1)})
    assert refused.status_code == 401
    csrf = re.search(r'name="csrf" value="([^"]+)"', refused.text)  # a fresh form, fresh token
    assert csrf is not None
    form = {"token": "token-vera", "next": "/ui/audit", "csrf": csrf.group(1)}
    signed_in = browser.post("/ui/login", data=form)
    assert signed_in.headers["location"] == "/ui/audit"
    assert "httponly" in signed_in.headers["set-cookie"].lower()
    version = browser.get(f"/ui/models/{MODEL}/versions/1")
    assert "signed in as <strong>vera</strong>" in version.text
    assert "Approve as" not in version.text
    assert "Your role does not allow approving" in version.text
    bob = TestClient(app, base_url="http://127.0.0.1")
    csrf = re.search(r'name="csrf" value="([^"]+)"', bob.get("/ui/login").text)
    assert csrf is not None
    bob.post("/ui/login", data={"token": "token-bob", "csrf": csrf.group(1)})
    assert bob.cookies[SESSION_COOKIE] == "session-1"
    assert "Approve as bob" in bob.get(f"/ui/models/{MODEL}/versions/1").text


# --- in a real browser ---------------------------------------------------------------------


@dataclass
class UIServer:
    url: str
    user: str


def _spawn_ui(home: Path, user: str) -> tuple[subprocess.Popen[bytes], UIServer]:
    """``clew ui`` in its own process, acting as ``user`` (CLEW_USER), on a free port."""
    port = free_port()
    code = f"from clew.cli.ui import ui; ui(host='127.0.0.1', port={port})"
    env = {**os.environ, "CLEW_HOME": str(home), "CLEW_USER": user}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    return process, UIServer(f"http://127.0.0.1:{port}", user)


def _wait_until_serving(process: subprocess.Popen[bytes], server: UIServer) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"clew ui for {server.user} exited with {process.returncode}")
        try:
            if httpx.get(f"{server.url}/ui/static/clew.css", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"clew ui for {server.user} did not start within 90 s")


@pytest.fixture(scope="module")
def servers(populated: Populated) -> Iterator[dict[str, UIServer]]:
    require_backend(CHROMIUM.exists(), "Chromium (apt-get install chromium)")
    started = [_spawn_ui(populated.home, user) for user in ("alice", "bob")]
    try:
        for process, server in started:
            _wait_until_serving(process, server)
        yield {server.user: server for _, server in started}
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(10)


def test_every_page_loads_cleanly(
    page: Any, servers: dict[str, UIServer], populated: Populated
) -> None:
    base = servers["alice"].url
    runs = populated.runs
    pages = {
        "models": "/ui/models",
        "model": f"/ui/models/{MODEL}",
        "version": f"/ui/models/{MODEL}/versions/3",
        "experiments": "/ui/experiments",
        "compare": f"/ui/compare?run={runs['rf-3']}&run={runs['rf-10']}&run={runs['rf-30']}",
        "run": f"/ui/runs/{runs['rf-30']}",
        "audit": "/ui/audit",
        "lineage": f"/ui/lineage?ref={MODEL}/3",
        "prediction": f"/ui/predictions/{populated.prediction}",
    }
    for name, path in pages.items():
        response = page.goto(base + path)
        assert response.status == 200, name
        page.wait_for_load_state("networkidle")
        screenshot(page, name)
    page.goto(base + f"/ui/models/{MODEL}/versions/3")
    integrity = page.locator("#integrity")
    integrity.get_by_text("digest verified").wait_for()
    page.goto(base + "/ui/audit")
    page.locator("#chain-status").get_by_text("chain verified").wait_for()


def test_lineage_graph_draws_the_thread(page: Any, servers: dict[str, UIServer]) -> None:
    page.goto(servers["alice"].url + f"/ui/lineage?ref={MODEL}/3")
    page.locator("#lineage-graph .node").first.wait_for()
    names = set(page.locator("#lineage-graph .node .node-name").all_text_contents())
    assert {"iris-rf", "rf-30", "iris-train", "prepare", "iris-raw"} <= names
    assert "rf-3" not in names
    page.locator("#lineage-graph .node", has_text="iris-train").click()
    panel = page.locator("#node-panel")
    assert panel.locator(".node-title").text_content() == "iris-train"
    before = page.locator("#lineage-graph .node").count()
    panel.locator(".node-expand").click()
    page.locator("#lineage-graph .node-name", has_text=re.compile(r"^rf-3$")).wait_for()
    assert page.locator("#lineage-graph .node").count() > before
    page.locator(".graph-tools [data-action=contexts]").check()
    page.locator("#lineage-graph .node.cat-context").first.wait_for()
    screenshot(page, "lineage-expanded")


def test_creator_approval_is_refused_with_the_policy_reason(
    page: Any, servers: dict[str, UIServer], populated: Populated
) -> None:
    page.goto(servers["alice"].url + f"/ui/models/{MODEL}/versions/1")
    page.fill("#decide-form textarea[name=comment]", "I checked my own work")
    page.click("#decide-form button[value=approve]")
    refusal = page.locator("#refusal")
    assert "separation of duties" in refusal.text_content()
    assert "alice" in refusal.text_content()
    screenshot(page, "version-refused")
    status = PromotionService(populated.store).version_status(f"{MODEL}/1")
    assert "alice" not in status["approved_by"]


def test_second_person_approves_and_promotes(
    page: Any, servers: dict[str, UIServer], populated: Populated
) -> None:
    page.goto(servers["bob"].url + f"/ui/models/{MODEL}/versions/2")
    page.fill("#decide-form textarea[name=comment]", "validated on the holdout split")
    page.click("#decide-form button[value=approve]")
    assert "approved by bob" in page.locator(".notice").text_content()
    history = page.locator("#history-table")
    assert "validated on the holdout split" in history.text_content()
    page.fill("#promote-form input[name=alias]", "production")
    page.fill("#promote-form input[name=comment]", "best holdout accuracy")
    page.click("#promote-form button")
    assert "production now points at" in page.locator(".notice").text_content()
    screenshot(page, "version-approved")
    status = PromotionService(populated.store).version_status(f"{MODEL}/2")
    assert status["approved_by"] == ["bob"]
    assert status["aliases"] == ["production"]


def test_user_supplied_html_is_shown_as_text(
    page: Any, servers: dict[str, UIServer], populated: Populated
) -> None:
    base = servers["alice"].url
    page.goto(base + "/ui/experiments")
    table = page.locator("#runs-table")
    assert table.get_by_text(HTML_RUN_NAME, exact=True).count() == 1
    assert table.locator("img").count() == 0
    page.goto(base + f"/ui/runs/{populated.runs['rf-3']}")
    assert page.get_by_text(HTML_TAG, exact=True).count() == 1
    page.goto(base + f"/ui/models/{MODEL}/versions/1")
    lead = page.locator("p.lead")
    assert lead.text_content() == HTML_DESCRIPTION
    assert lead.locator("b").count() == 0
    page.goto(base + f"/ui/lineage?ref=run:{populated.runs['html']}")
    page.locator("#lineage-graph .node").first.wait_for()
    assert page.locator("#lineage-graph image, #lineage-graph img").count() == 0
    assert page.title() != "pwned"


def test_runs_are_compared_on_charts(page: Any, servers: dict[str, UIServer]) -> None:
    query = urlencode({"filter": "metrics.accuracy > 0.6"})
    page.goto(servers["alice"].url + "/ui/experiments?" + query)
    rows = page.locator("#runs-table tbody tr")
    assert rows.count() == 3
    page.locator("#runs-table input.run-select").nth(0).check()
    page.locator("#runs-table input.run-select").nth(1).check()
    assert re.search(r"Compare 2 runs", page.locator("#compare-button").text_content())
    page.click("#compare-button")
    loss = page.locator("figure.chart[data-metric=loss]")
    loss.wait_for()
    assert loss.locator("path.series").count() == 2


def test_prediction_trace_is_drawn_with_verdicts(
    page: Any, servers: dict[str, UIServer], populated: Populated
) -> None:
    page.goto(servers["alice"].url + f"/ui/lineage?ref=prediction:{populated.prediction}")
    assert f"/ui/predictions/{populated.prediction}" in page.url
    graph = page.locator("#lineage-graph")
    prediction = graph.locator(".node.cat-prediction")
    prediction.wait_for()
    assert prediction.get_attribute("aria-label") == f"prediction {populated.prediction}"
    names = set(graph.locator(".node .node-name").all_text_contents())
    assert {"iris-rf", "rf-30", "iris-train"} <= names
    assert graph.locator(".node.cat-model.verified").count() == 1
    steps = page.locator("#trace-steps .trace-step")
    assert steps.count() >= 4
    assert "model version" in steps.nth(1).text_content()
    screenshot(page, "prediction-trace")
