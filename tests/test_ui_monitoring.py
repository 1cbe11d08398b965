"""The monitoring page and the monitor status in the UI, on a real store through a real server.

One store per module: a scikit-learn classifier registered as ``churn``, two batches of real
captured predictions with their ground-truth labels, and two monitor runs made by the real
runner (``MonitorRunService.run_window``), one per batch window. Each run performs the
standard model-quality check and a drift check computed by the monitoring statistics
(``clew.domain.statistics`` and ``clew.service.drift``) from the captured inputs against the
training data. The first window is healthy; in the second the labels disagree with every
prediction and one feature has moved, so the policy (``revalidate``) marks the version
"needs revalidation". A real ``clew server`` serves the store; HTTP checks use httpx, page
checks drive Debian's Chromium through Playwright (screenshots in
test-artifacts/screenshots/monitoring-*.png).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from browser_fixtures import screenshot
from server_fixtures import RunningServer, serve
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import clew
from clew.domain.monitor_runs import MonitorRun
from clew.domain.monitoring import CheckReport, Violation, Window
from clew.domain.statistics import quantile_edges, summarise_numeric
from clew.server.web_sessions import SESSION_COOKIE
from clew.service import accounts, drift, sessions
from clew.service.model_quality import quality_check, window_rows
from clew.service.monitor_runs import MonitorRunService
from clew.service.registry import RegistryService
from clew.store.location import Store, open_store

pytest_plugins = ("browser_fixtures",)

MODEL = "churn"
FEATURES = ["tenure", "spend", "calls", "age"]
SHIFTED = "spend"
IDLE = "churn-idle"  # registered, never monitored
PSI_LIMIT = 0.25
POLICY = (
    "approvals:\n  required: 1\n  separation_of_duties: false\n"
    f"monitoring:\n  on_violation: warn\n  models:\n    {MODEL}: revalidate\n"
)
ROLES = {"vera": "viewer", "alice": "approver"}


@dataclass
class Monitored:
    server: RunningServer
    runs: list[MonitorRun]
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url


def _drift_check(store: Store, baseline: pd.DataFrame) -> Any:
    """Per-feature drift of a window's captured inputs against the training data (PSI, KS,
    Wasserstein from the mergeable statistics), a violation when PSI passes ``PSI_LIMIT``."""
    edges = {name: quantile_edges(baseline[name].to_numpy(float)) for name in FEATURES}
    expected = {
        name: summarise_numeric(baseline[name].to_numpy(float), 0, edges[name]) for name in FEATURES
    }

    def check(window: Window) -> CheckReport:
        version = RegistryService(store).resolve(f"{window.model}/{window.version}")
        rows = window_rows(store, window, version.id, FEATURES)
        features: dict[str, Any] = {}
        broken = []
        for name in FEATURES:
            values = np.array([float(v) for v in rows.column(name).to_pylist()])
            found = drift.numeric_drift(
                expected[name], summarise_numeric(values, 0, edges[name])
            ).to_dict()
            features[name] = found
            if found["psi"] > PSI_LIMIT:
                broken.append(
                    Violation(
                        name,
                        "baseline_drift_check",
                        f"PSI of {name} is {found['psi']:.3g}, above {PSI_LIMIT}",
                        found["psi"],
                        PSI_LIMIT,
                    )
                )
        return CheckReport("drift", window, rows.num_rows, {"features": features}, tuple(broken))

    return check


def _capture(client: clew.Client, model: Any, frame: pd.DataFrame) -> Any:
    _, ids = model.predict_with_ids(frame)
    client.flush_captures()
    return ids


def _now_ms() -> int:
    time.sleep(0.01)
    return int(time.time() * 1000)


def populate(client: clew.Client, store: Store) -> list[MonitorRun]:
    """alice trains and registers churn, captures two windows, labels them, and the runner
    runs the monitor over each (healthy, then drifted with wrong predictions)."""
    values, target = make_classification(n_samples=900, n_features=4, random_state=3)
    frame = pd.DataFrame(values, columns=FEATURES)
    train = frame[:500]
    with client.start_run("churn", "train") as run:
        model = LogisticRegression(max_iter=500).fit(train, target[:500])
        run.log_metric("accuracy", float(model.score(frame[500:], target[500:])))
        artifact = run.log_model(model, name="churn-lr")
    client.register_model(artifact, MODEL, owner="alice", risk_tier="high")
    client.register_model(artifact, IDLE, owner="alice")
    client.set_policy(POLICY)
    loaded = client.load_model(f"{MODEL}/1")
    checks = [quality_check(store), _drift_check(store, train)]
    runner = MonitorRunService(store)
    runs = []
    start = _now_ms()
    healthy = frame[500:700]
    ids = _capture(client, loaded, healthy)
    client.log_labels(list(ids), [int(v) for v in target[500:700]])
    end = _now_ms()
    runs.append(runner.run_window(Window(MODEL, 1, start, end), "alice", checks=checks))
    drifted = frame[700:900].assign(**{SHIFTED: frame[SHIFTED][700:900] + 4.0})
    predicted, ids = loaded.predict_with_ids(drifted)
    client.flush_captures()
    client.log_labels(list(ids), [1 - int(v) for v in predicted])
    later = _now_ms()
    runs.append(runner.run_window(Window(MODEL, 1, end, later), "alice", checks=checks))
    return runs


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    root = tmp_path_factory.mktemp("ui-monitoring")
    patch = pytest.MonkeyPatch()
    patch.setenv("CLEW_USER", "alice")
    try:
        client = clew.Client(str(root / "home"))
        assert isinstance(client.store, Store)
        runs = populate(client, client.store)
        client.close()
    finally:
        patch.undo()
    store = open_store(root / "home")
    for running in serve(store, root):
        tokens = {user: running.user(user, role) for user, role in ROLES.items()}
        yield Monitored(running, runs, tokens)


def _session(monitored: Monitored, user: str) -> str:
    store = monitored.server.store
    principal = accounts.authenticate(store, monitored.tokens[user])
    opened = sessions.open_session(
        store, principal, client="test", user_agent="httpx", lifetimes=sessions.Lifetimes()
    )
    return opened.secret


def _browser(monitored: Monitored, user: str | None = None) -> httpx.Client:
    cookies = {SESSION_COOKIE: _session(monitored, user)} if user else {}
    return httpx.Client(base_url=monitored.url, cookies=cookies, timeout=30)


def _signed_in(page: Any, monitored: Monitored, user: str) -> Any:
    host = monitored.url.split("//")[1].split(":")[0]
    page.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": _session(monitored, user), "domain": host, "path": "/"}]
    )
    return page


# --- the runs the page shows were made as the module says ---------------------------------


def test_the_runner_made_one_healthy_and_one_failing_run(monitored: Monitored) -> None:
    healthy, failing = monitored.runs
    assert healthy.passed and healthy.action is None
    checks = {report.check: report for report in failing.reports}
    assert {v.feature_name for v in checks["drift"].violations} == {SHIFTED}
    assert checks["model_quality"].violations[0].feature_name == "accuracy"
    assert failing.action == "revalidate"


# --- HTTP: who may read it, and what it answers --------------------------------------------


def test_a_viewer_reads_the_page_and_an_anonymous_caller_cannot(monitored: Monitored) -> None:
    with _browser(monitored, "vera") as viewer:
        page = viewer.get(f"/ui/models/{MODEL}/monitoring")
    assert page.status_code == 200
    assert "needs revalidation" in page.text and "baseline_drift_check" in page.text
    with _browser(monitored) as anonymous:
        refused = anonymous.get(f"/ui/models/{MODEL}/monitoring")
        token_less = anonymous.get(f"/ui/models/{MODEL}/monitoring", follow_redirects=True)
    assert refused.status_code in (303, 401)
    assert "/ui/login" in str(token_less.url) and "baseline_drift_check" not in token_less.text


def test_the_page_has_no_form_that_writes(monitored: Monitored) -> None:
    with _browser(monitored, "vera") as viewer:
        text = viewer.get(f"/ui/models/{MODEL}/monitoring").text
    methods = re.findall(r"<form[^>]*method=\"(\w+)\"", text)
    # the only POST is the layout's sign-out form
    assert methods.count("post") == 1 and "/ui/logout" in text
    assert methods.count("get") >= 2


def test_unknown_model_version_or_run_is_one_sentence(monitored: Monitored) -> None:
    with _browser(monitored, "vera") as viewer:
        missing = viewer.get("/ui/models/no-such-model/monitoring")
        version = viewer.get(f"/ui/models/{MODEL}/monitoring", params={"version": 9})
        run = viewer.get(f"/ui/models/{MODEL}/monitoring", params={"a": "not-a-run"})
        huge = viewer.get(f"/ui/models/{MODEL}/monitoring", params={"version": 2**40})
    assert missing.status_code == 404 and "is not registered" in missing.text
    assert version.status_code == 400 and "has no version 9" in version.text
    assert run.status_code == 400 and "pick the windows from the lists" in run.text
    assert huge.status_code == 422
    for response in (missing, version, run):
        assert "Traceback" not in response.text


def test_monitor_status_shows_on_inventory_model_and_version(monitored: Monitored) -> None:
    with _browser(monitored, "vera") as viewer:
        inventory = viewer.get("/ui/models").text
        model = viewer.get(f"/ui/models/{MODEL}").text
        version = viewer.get(f"/ui/models/{MODEL}/versions/1").text
    for text in (inventory, model, version):
        assert 'data-outcome="failed"' in text
        assert "1 open violation" in text
        assert f"/ui/models/{MODEL}/monitoring" in text
    assert "needs revalidation" in inventory and "needs revalidation" in version
    assert "PSI of spend" in version or "accuracy" in version


def test_a_model_never_monitored_says_how_to_start(monitored: Monitored) -> None:
    with _browser(monitored, "vera") as viewer:
        page = viewer.get(f"/ui/models/{IDLE}/monitoring")
        inventory = viewer.get("/ui/models", params={"q": IDLE}).text
    assert page.status_code == 200 and 'id="no-runs"' in page.text
    assert f"clew monitor run {IDLE}/1" in page.text and "spark" not in page.text
    assert 'data-outcome="not monitored"' in inventory and "open violation" not in inventory


# --- the page in a real browser ------------------------------------------------------------


def test_the_page_draws_figures_violations_and_two_windows(monitored: Monitored, page: Any) -> None:
    tab = _signed_in(page, monitored, "vera")
    tab.goto(f"{monitored.url}/ui/models/{MODEL}")
    tab.click("#monitoring-link")
    tab.wait_for_url(re.compile(rf"/ui/models/{MODEL}/monitoring"))
    assert "needs revalidation" in tab.locator("h1").text_content()
    assert "1 open monitoring violation" in tab.locator("#open-violations").text_content()
    # drift per feature: one chart for each figure of each feature, drawn with both runs
    for feature in FEATURES:
        subject = tab.locator(f'#check-drift .subject[data-subject="features / {feature}"]')
        figures = subject.locator("figure.spark").evaluate_all(
            "els => els.map(e => e.dataset.figure)"
        )
        assert {"psi", "ks", "wasserstein"} <= set(figures)
        assert subject.locator("figure.spark svg circle").count() == len(figures) * 2
    failed = tab.locator('#check-drift [data-subject="features / spend"] circle.failed')
    assert failed.count() >= 1
    # model quality over time, once labels arrived
    whole = tab.locator('#check-model_quality .subject[data-subject="whole window"]')
    accuracy = whole.locator('figure.spark[data-figure="accuracy"]')
    assert accuracy.locator("svg path.series").count() == 1
    failing = monitored.runs[1]
    [quality] = [report for report in failing.reports if report.check == "model_quality"]
    latest = quality.metrics["accuracy"]
    assert accuracy.locator(".latest").text_content() == f"{latest:.4g}"
    # the violations, each with what the policy did
    rows = tab.locator("#violations-table tbody tr")
    text = rows.all_text_contents()
    assert any("spend" in row and "baseline_drift_check" in row for row in text)
    assert any("model_quality_check" in row and "accuracy" in row for row in text)
    assert all("revalidate" in row for row in text)
    screenshot(tab, "monitoring-page")
    # two windows side by side: the defaults are the two runs, older first
    psi = tab.locator('#compare-table tr[data-key="drift|features / spend|psi"] td.num')
    before = float(psi.nth(0).text_content())
    after = float(psi.nth(1).text_content())
    assert before < PSI_LIMIT < after
    assert float(psi.nth(2).text_content()) == pytest.approx(after - before, rel=1e-3)
    # choosing the same window twice shows no change anywhere
    tab.select_option("select[name=a]", failing.id)
    tab.select_option("select[name=b]", failing.id)
    tab.click("#compare-form button[type=submit]")
    tab.wait_for_url(re.compile(r"a=.*b="))
    changes = tab.locator("#compare-table td.num:nth-child(6)").all_text_contents()
    assert changes and {float(c) for c in changes if c} == {0.0}


def test_the_inventory_shows_the_monitor_status_in_a_browser(
    monitored: Monitored, page: Any
) -> None:
    tab = _signed_in(page, monitored, "vera")
    tab.goto(f"{monitored.url}/ui/models")
    row = tab.locator("#models-table tbody tr", has=tab.locator(f'a:text-is("{MODEL}")'))
    assert "needs revalidation" in row.text_content()
    status = row.locator(".monitor-status")
    assert status.get_attribute("data-outcome") == "failed"
    assert "1 open violation" in status.text_content()
    screenshot(tab, "monitoring-inventory")
    status.click()
    tab.wait_for_url(re.compile(rf"/ui/models/{MODEL}/monitoring"))
    assert tab.locator("#runs-table tbody tr").count() == 2
