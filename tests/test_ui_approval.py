"""The approval form's evidence block in a real browser (Debian's Chromium through Playwright),
over a real server on a real store: each report the policy requires is shown as present,
missing or failing, a failing one with its measured figure, and a ``<script>`` in a sensitive
attribute's or a feature's name renders as inert text (screenshot in
test-artifacts/screenshots/approval-evidence.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from browser_fixtures import screenshot
from server_fixtures import RunningServer, serve
from sklearn.ensemble import RandomForestClassifier

import clew
from clew.server.web_sessions import SESSION_COOKIE
from clew.service import accounts, sessions
from clew.store.location import open_store

pytest_plugins = ("browser_fixtures",)

SCRIPT = "<script>document.title='pwned'</script>"
FEATURES = ["income", "debt", SCRIPT]
POLICY = f"""
production:
  evidence:
    bias: {{attributes: [sex, income_band, "{SCRIPT}"], disparate_impact: 0.6}}
    explanation: {{scope: global}}
"""


@dataclass
class Form:
    server: RunningServer
    token: str
    figures: dict[str, float]


def _data(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Income drives the label, so ``income_band`` (income above the median) has a low
    disparate impact; ``sex`` is random, so its impact is near 1."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "income": rng.normal(50, 15, rows),
            "debt": rng.normal(20, 8, rows),
            SCRIPT: rng.normal(0, 1, rows),
            "sex": rng.choice(["f", "m"], rows),
        }
    )
    data["income_band"] = np.where(data["income"] > data["income"].median(), "high", "low")
    data["target"] = (data["income"] - 0.5 * data["debt"] > 40).astype(int)
    return data


@pytest.fixture(scope="module")
def form(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Form]:
    """loans/1 with a bias report on sex (passes) and income_band (fails) and a global
    explanation; the policy also requires a bias report on the script-named attribute."""
    root = tmp_path_factory.mktemp("ui-approval")
    patch = pytest.MonkeyPatch()
    try:
        patch.setenv("CLEW_USER", "alice")
        client = clew.Client(str(root / "home"))
        data = _data()
        with client.start_run("loans", "train", capture_code=False) as run:
            model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
            artifact = run.log_model(model.fit(data[FEATURES], data["target"]), name="loans")
        ref = client.register_model(artifact, "loans", risk_tier="high").ref
        client.set_policy(POLICY)
        report = client.bias_report(
            ref, _data(seed=1), target="target", attributes=["sex", "income_band"]
        )
        client.explain(ref, _data(seed=1)[FEATURES])
        figures = {name: a["disparate_impact"] for name, a in report["attributes"].items()}
        client.close()
    finally:
        patch.undo()
    store = open_store(root / "home")
    for running in serve(store, root):
        yield Form(running, running.user("bob", "approver"), figures)


def _sign_in(form: Form, page: Any) -> None:
    store = form.server.store
    principal = accounts.authenticate(store, form.token)
    opened = sessions.open_session(
        store, principal, client="test", user_agent="chromium", lifetimes=sessions.Lifetimes()
    )
    host = form.server.url.split("//")[1].split(":")[0]
    page.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": opened.secret, "domain": host, "path": "/"}]
    )


def test_the_approval_form_shows_each_required_report_present_missing_or_failing(
    form: Form, page: Any
) -> None:
    assert form.figures["income_band"] < 0.6 <= form.figures["sex"]
    _sign_in(form, page)
    page.goto(f"{form.server.url}/ui/models/loans/versions/1")
    block = page.locator("#decide-form #required-evidence")
    checks = block.locator("li.evidence-check")
    states = {
        checks.nth(i).locator(".evidence-requirement").text_content(): checks.nth(i).get_attribute(
            "data-state"
        )
        for i in range(checks.count())
    }
    assert states == {
        "a bias report on 'sex' with disparate impact of at least 0.6": "present",
        "a bias report on 'income_band' with disparate impact of at least 0.6": "failing",
        f"a bias report on {SCRIPT!r} with disparate impact of at least 0.6": "missing",
        "a global explanation": "present",
    }
    failing = checks.filter(has=page.locator(".evidence-requirement", has_text="income_band"))
    measured = f"measured {form.figures['income_band']:.3g}"
    assert failing.locator(".evidence-value").text_content() == measured
    assert failing.locator(".evidence-state").text_content() == "failing"
    assert f"is {form.figures['income_band']:.3g}, below the 0.6" in (
        failing.locator(".evidence-gap").text_content() or ""
    )
    missing = checks.filter(has=page.locator(".evidence-requirement", has_text="pwned"))
    assert "has none" in (missing.locator(".evidence-gap").text_content() or "")
    screenshot(page, "approval-evidence")


def test_a_script_in_an_attribute_or_feature_name_renders_inert(form: Form, page: Any) -> None:
    _sign_in(form, page)
    page.goto(f"{form.server.url}/ui/models/loans/versions/1")
    assert page.title() != "pwned"
    assert page.evaluate("document.title") != "pwned"
    block = page.locator("#required-evidence").text_content() or ""
    assert SCRIPT in block  # shown as the text it is
    assert page.locator("#required-evidence script").count() == 0
    assert page.locator(".signature", has_text=SCRIPT).count() >= 1
