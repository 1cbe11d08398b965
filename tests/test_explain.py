"""Explanations and bias reports of real scikit-learn models, recorded as evidence the policy can
require: embedded, on PostgreSQL + S3 and through the server alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shap
from fairlearn.metrics import demographic_parity_ratio
from fastapi.testclient import TestClient
from server_fixtures import AsUser
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import clew
from clew.domain import bias
from clew.domain.records import VersionRecord
from clew.errors import ClewError, InvalidInputError, PolicyError
from clew.server.ui import create_ui_app
from clew.service import explanations
from clew.store.location import Store

FEATURES = ["income", "debt", "tenure"]


def frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Loan-like data: three features, two sensitive attributes the model does not see."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "income": rng.normal(50, 15, rows),
            "debt": rng.normal(20, 8, rows),
            "tenure": rng.integers(0, 30, rows).astype(float),
            "sex": rng.choice(["f", "m"], rows),
            "age_band": rng.choice(["18-30", "31-50", "51+"], rows),
        }
    )
    score = 0.08 * data["income"] - 0.15 * data["debt"] + 0.05 * data["tenure"]
    data["target"] = (score + rng.normal(0, 1, rows) > score.median()).astype(int)
    return data


def register(client: clew.Client, model: object, name: str = "loans", tier: str = "high") -> str:
    data = frame()
    with client.start_run("loans", "train", capture_code=False) as run:
        run.log_param("target", "target")
        run.log_input(data, name="loans-train")
        fitted = model.fit(data[FEATURES], data["target"])  # type: ignore[attr-defined]
        artifact = run.log_model(fitted, name=f"{name}-model")
    return client.register_model(artifact, name, owner="credit", risk_tier=tier).ref


@pytest.fixture
def forest(client: clew.Client) -> str:
    return register(client, RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0))


def test_global_explanation_agrees_with_shap_and_is_linked_to_version_and_data(
    client: clew.Client, forest: str
) -> None:
    data = frame(rows=300, seed=1)
    report = client.explain(forest, data, target="target")

    assert report["method"] == "tree" and report["scope"] == "global"
    assert report["rows_explained"] == 300
    model = client.load_model(forest).raw
    direct = shap.TreeExplainer(model).shap_values(data[FEATURES], check_additivity=False)
    expected = np.abs(np.asarray(direct)[:, :, -1]).mean(axis=0)
    found = {f["feature"]: f["mean_abs_shap"] for f in report["features"]}
    assert found == pytest.approx(dict(zip(FEATURES, expected, strict=True)), rel=1e-9)
    assert all("permutation_importance" in f for f in report["features"])
    assert report["features"][0]["mean_abs_shap"] >= report["features"][-1]["mean_abs_shap"]
    # Lineage: one evaluation run consumed the model and the data and produced JSON + HTML.
    run = client.get_run(report["run_id"])
    assert run.kind == "evaluation"
    linked = client._service.artifacts.run_artifacts(run.id)
    version = client.get_version(forest)
    assert {a.digest for a in linked["inputs"]} >= {version.digest}
    assert {a.name for a in linked["inputs"]} >= {"loans-evaluation"}
    assert sorted(a.name for a in linked["outputs"]) == [
        "loans-v1-explanation",
        "loans-v1-explanation.html",
    ]
    listed = client.version_reports(forest)
    assert [(r["kind"], r["scope"], r["dataset"]) for r in listed] == [
        ("explanation", "global", "loans-evaluation")
    ]


def test_linear_model_is_explained_with_the_linear_explainer(client: clew.Client) -> None:
    ref = register(client, LogisticRegression(max_iter=500), name="loans-lr", tier="low")
    report = client.explain(ref, frame(seed=2), record=False)
    assert report["method"] == "linear"
    assert report["rows_explained"] == 300  # a seeded sample of the 600 rows
    assert "run_id" not in report  # record=False records nothing
    assert client.version_reports(ref) == []


def test_local_explanation_of_a_captured_prediction_adds_up_to_its_output(
    client: clew.Client, forest: str
) -> None:
    loaded = client.load_model(forest)
    rows = frame(rows=5, seed=3)[FEATURES]
    outputs, ids = loaded.predict_proba_with_ids(rows)
    client.flush_captures()

    local = client.explain_prediction(ids[2])

    assert local["prediction_id"] == ids[2] and local["scope"] == "local"
    assert local["model"]["digest"] == loaded.version.digest
    total = local["base_value"] + sum(c["shap"] for c in local["contributions"])
    assert total == pytest.approx(outputs[2][1], abs=1e-6)
    assert {c["feature"]: c["value"] for c in local["contributions"]} == pytest.approx(
        rows.iloc[2].to_dict()
    )


def test_a_prediction_whose_inputs_were_not_kept_is_refused_in_one_sentence(
    client: clew.Client, forest: str
) -> None:
    loaded = client.load_model(forest)
    loaded.input_sampling = 0
    _, ids = loaded.predict_with_ids(frame(rows=3)[FEATURES])
    client.flush_captures()
    with pytest.raises(InvalidInputError, match=r"its inputs were not captured \(input sampling"):
        client.explain_prediction(ids[0])


def test_bias_report_agrees_with_fairlearn_and_bad_attributes_record_nothing(
    client: clew.Client, forest: str
) -> None:
    data = frame(seed=4)
    report = client.bias_report(forest, data, target="target", attributes=["sex", "age_band"])

    predicted = client.load_model(forest).raw.predict(data[FEATURES])
    for attribute in ("sex", "age_band"):
        expected = demographic_parity_ratio(
            data["target"], predicted, sensitive_features=data[attribute]
        )
        measured = report["attributes"][attribute]["disparate_impact"]
        assert measured == pytest.approx(expected, abs=1e-12)
    assert report["attributes"]["sex"]["groups"][0]["class_imbalance"] is not None

    before = client.version_reports(forest)
    with pytest.raises(InvalidInputError, match="sensitive attribute 'race' is not a column"):
        client.bias_report(forest, data, target="target", attributes=["race"])
    assert client.version_reports(forest) == before


def _set_policy(as_user: AsUser, document: str) -> None:
    as_user("dana", role="admin").set_policy(document)


POLICY = """
production:
  evidence:
    bias: {attributes: [age_band, sex], disparate_impact: %s, risk_tiers: [high]}
    explanation: {scope: global, risk_tiers: [high]}
"""


def test_policy_requires_bias_and_explanation_before_approval_and_promotion(
    client: clew.Client, forest: str, as_user: AsUser
) -> None:
    _set_policy(as_user, POLICY % "0.5")
    bob = as_user("bob")
    with pytest.raises(PolicyError) as refused:
        bob.approve(forest, "validated")
    message = str(refused.value)
    assert "requires a bias report on 'age_band'" in message
    assert "requires a global explanation" in message
    assert bob.model_history("loans")[0].kind == "registered"  # nothing recorded

    alice = as_user("alice")
    alice.bias_report(forest, frame(seed=5), target="target", attributes=["age_band", "sex"])
    alice.explain(forest, frame(seed=5))
    assert as_user("bob").approve(forest, "bias and explanation reviewed").kind == "approved"
    assert clew.version_status(forest)["meets_production_policy"]

    _set_policy(as_user, POLICY % "0.999")  # stricter: the recorded figures now fail
    with pytest.raises(
        PolicyError, match=r"disparate impact on 'age_band' is 0\.\d+, below the 0\.999"
    ):
        as_user("dana", role="admin").promote(forest, "production")
    status = as_user("alice").version_status(forest)
    assert not status["meets_production_policy"]
    assert any("below the 0.999" in reason for reason in status["reasons"])


def test_a_low_risk_model_needs_no_bias_report(client: clew.Client, as_user: AsUser) -> None:
    ref = register(client, LogisticRegression(max_iter=500), name="low", tier="low")
    _set_policy(as_user, POLICY % "0.8")
    assert as_user("bob").approve(ref, "low risk").kind == "approved"


def test_unknown_evidence_kind_is_refused_when_the_policy_is_set(
    client: clew.Client, as_user: AsUser
) -> None:
    admin = as_user("dana", role="admin")
    before = admin.get_policy()["version"]
    with pytest.raises(ClewError, match=r"production\.evidence has unknown key"):
        admin.set_policy("production: {evidence: {fairness: {attributes: [sex]}}}")
    assert admin.get_policy()["version"] == before


def test_report_html_renders_script_in_names_inert() -> None:
    version = VersionRecord(
        id="v",
        model_id="m",
        name="<script>alert(1)</script>",
        version=1,
        artifact_id="a",
        digest="sha256:" + "0" * 64,
        run_id=None,
        signature={},
        metrics={},
        description="",
        created_ms=0,
        created_by="alice",
    )
    explanation = {
        "method": "tree",
        "base_value": 0.5,
        "rows_explained": 1,
        "features": [{"feature": '<img src=x onerror="alert(1)">', "mean_abs_shap": 0.1}],
    }
    metrics = bias.compute([1, 0, 1, 0], {"<script>x</script>": ["<i>a</i>"] * 4}, [1, 0, 0, 0])
    pages = [
        explanations.render_html(
            explanations.explanation_document(explanation, version, {"name": "<b>data</b>"})
        ),
        explanations.render_html(
            explanations.bias_document(metrics.to_dict(), version, {"name": "d"}, "<u>t</u>")
        ),
    ]
    for page in pages:
        assert "<script>" not in page and "<img" not in page and "<b>" not in page
        assert "<i>" not in page and "&lt;script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in pages[0]
    assert "&lt;i&gt;a&lt;/i&gt;" in pages[1]


@pytest.mark.embedded_only  # the UI app reads the embedded store; the server pass covers the routes
def test_approval_form_shows_the_required_reports_and_what_is_missing(
    client: clew.Client, forest: str, as_user: AsUser
) -> None:
    assert isinstance(client.store, Store)
    _set_policy(as_user, POLICY % "0.8")
    as_user("bob")
    http = TestClient(create_ui_app(client.store), base_url="http://127.0.0.1")
    page = http.get("/ui/models/loans/versions/1").text
    assert 'id="required-evidence"' in page
    assert "a bias report on &#39;age_band&#39; with disparate impact of at least 0.8" in page
    assert "a global explanation" in page
    assert "requires a global explanation and loans/1 has none" in page
    as_user("alice").explain(forest, frame(seed=9))
    page = http.get("/ui/models/loans/versions/1").text
    assert "explanation report loans-v1-explanation" in page
    assert "requires a global explanation and loans/1 has none" not in page


def test_a_dataset_logged_earlier_is_explained_by_ref_and_linked_as_it_is(
    client: clew.Client, forest: str
) -> None:
    with client.start_run("loans", "holdout", capture_code=False) as run:
        holdout = run.log_input(frame(seed=10), name="loans-holdout")
    report = client.bias_report(forest, "dataset:loans-holdout", target="target", attributes="sex")
    assert report["dataset"] == {"name": "loans-holdout", "digest": holdout.digest, "rows": 600}
    with pytest.raises(InvalidInputError, match="pass a pandas DataFrame or a dataset"):
        client.explain(forest, [[1, 2, 3]])
