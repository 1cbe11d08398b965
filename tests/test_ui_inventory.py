"""The inventory as a compliance dashboard, on a real store through a real server: risk tier,
validation state and next review, open findings, monitor status and last violation per model,
a validation-state filter, and a CSV export of every match. HTTP checks use httpx, page checks
drive Debian's Chromium through Playwright (screenshot in
test-artifacts/screenshots/inventory-compliance.png).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from browser_fixtures import screenshot
from server_fixtures import RunningServer, serve
from sklearn.linear_model import LogisticRegression

import clew
from clew.server.web_sessions import SESSION_COOKIE
from clew.service import accounts, sessions
from clew.store.location import Store, open_store

pytest_plugins = ("browser_fixtures",)


@dataclass
class Dashboard:
    server: RunningServer
    token: str
    finding_id: str

    @property
    def url(self) -> str:
        return self.server.url


def _register(client: clew.Client, name: str, tier: str, seed: int) -> None:
    frame = pd.DataFrame(np.random.default_rng(seed).normal(size=(40, 2)), columns=["x", "y"])
    with client.start_run("credit", f"train-{name}") as run:
        run.log_input(frame, name=f"{name}-data")
        artifact = run.log_model(LogisticRegression().fit(frame, frame["x"] > 0), name=name)
    client.register_model(artifact, name, owner="dave", risk_tier=tier)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """``credit`` (high, reviewed by bob, one open high finding) and ``scores-v`` (low, never
    reviewed)."""
    root = tmp_path_factory.mktemp("ui-inventory")
    patch = pytest.MonkeyPatch()
    try:
        patch.setenv("CLEW_USER", "alice")
        client = clew.Client(str(root / "home"))
        client.set_policy("reviews:\n  high: 180d\n  default: 365d\n")
        _register(client, "credit", "high", 1)
        _register(client, "scores-v", "low", 2)
        patch.setenv("CLEW_USER", "bob")
        client.review_model("credit/1", "initial validation")
        finding = client.add_finding("credit/1", "high", "No stress test", due="2027-06-30")
        client.edit_card("credit/1", limitations="<script>alert(1)</script>")
        client.close()
    finally:
        patch.undo()
    store = open_store(root / "home")
    for running in serve(store, root):
        yield Dashboard(running, running.user("vera", "viewer"), finding.id)


def _session(dashboard: Dashboard) -> str:
    store: Store = dashboard.server.store
    principal = accounts.authenticate(store, dashboard.token)
    opened = sessions.open_session(
        store, principal, client="test", user_agent="httpx", lifetimes=sessions.Lifetimes()
    )
    return opened.secret


def _http(dashboard: Dashboard, signed_in: bool = True) -> httpx.Client:
    cookies = {SESSION_COOKIE: _session(dashboard)} if signed_in else {}
    return httpx.Client(base_url=dashboard.url, cookies=cookies, timeout=30)


def test_the_inventory_shows_validation_findings_and_monitoring(dashboard: Dashboard) -> None:
    with _http(dashboard) as http:
        page = http.get("/ui/models").text
    assert 'data-state="current"' in page and 'data-state="never reviewed"' in page
    assert "1 open, 1 high" in page and "next review" in page


def test_the_validation_filter_keeps_only_models_in_that_state(dashboard: Dashboard) -> None:
    with _http(dashboard) as http:
        page = http.get("/ui/models", params={"review": "never reviewed"}).text
    assert "scores-v" in page and ">credit</a>" not in page


def test_the_csv_export_has_every_match(dashboard: Dashboard) -> None:
    with _http(dashboard) as http:
        answer = http.get("/ui/models.csv", params={"risk_tier": "high"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["model"] for row in rows] == ["credit"]
    [credit] = rows
    assert credit["validation_state"] == "current" and credit["open_high_findings"] == "1"
    assert credit["monitor"] == "not monitored" and credit["last_violation"] == ""


def test_the_csv_export_needs_a_signed_in_viewer(dashboard: Dashboard) -> None:
    with _http(dashboard, signed_in=False) as http:
        answer = http.get("/ui/models.csv", follow_redirects=False)
    assert answer.status_code in (303, 401) and "credit" not in answer.text


def test_the_card_page_renders_a_script_inert(dashboard: Dashboard) -> None:
    with _http(dashboard) as http:
        version = http.get("/ui/models/credit/versions/1").text
        assert "/ui/models/credit/versions/1/card" in version
        page = http.get("/ui/models/credit/versions/1/card").text
    assert "Model card: credit/1" in page and "No stress test" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page


def test_a_validator_filters_and_exports_in_a_browser(dashboard: Dashboard, page: Any) -> None:
    host = dashboard.url.split("//")[1].split(":")[0]
    page.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": _session(dashboard), "domain": host, "path": "/"}]
    )
    page.goto(f"{dashboard.url}/ui/models")
    credit = page.locator("#models-table tbody tr", has=page.locator('a:text-is("credit")'))
    assert credit.locator(".review-state").text_content() == "current"
    assert "1 high" in credit.locator(".findings").text_content()
    screenshot(page, "inventory-compliance")
    page.select_option("select[name=review]", "never reviewed")
    page.click("#model-filter button[type=submit]")
    page.wait_for_url("**review=never+reviewed**")
    assert page.locator("#models-table tbody tr").count() == 1
    with page.expect_download() as download:
        page.click("#inventory-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert [row["model"] for row in csv.DictReader(io.StringIO(text))] == ["scores-v"]
