"""Structured model cards on a real store with a real model: facts come from lineage, edited
fields are versioned and audited, SageMaker cards round-trip, HTML is escaped and PDF renders
without a browser. Runs embedded, on PostgreSQL + S3 and through a server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from server_fixtures import AsUser
from sklearn.linear_model import LogisticRegression

import clew
from clew.domain import cards as rendering
from clew.errors import InvalidInputError

SCRIPT = "<script>alert('card')</script>"


@pytest.fixture
def credit(client: clew.Client, as_user: AsUser) -> clew.Client:
    """credit/1, trained on a logged dataset with a metric, approved by bob."""
    alice = as_user("alice")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 2)), columns=["income", "debt"])
    with alice.start_run("credit", "train") as run:
        run.log_input(frame, name="applications")
        run.log_params({"max_iter": 100})
        model = LogisticRegression(max_iter=100).fit(frame, frame["income"] > 0)
        run.log_metric("auc", 0.91)
        artifact = run.log_model(model, name="credit-lr")
    alice.register_model(artifact, "credit", owner="dave", risk_tier="high")
    as_user("bob").approve("credit/1", "validated on holdout")
    return as_user("alice")


def test_lineage_facts_fill_the_card_and_edits_are_revisions(credit: clew.Client) -> None:
    card = credit.card("credit/1")
    assert card.revision == 0 and not any(card.edited.values())
    assert set(card.edited) == set(rendering.EDITABLE)
    assert card.facts["risk_tier"] == "high" and card.facts["owner"] == "dave"
    assert [item["name"] for item in card.facts["training_data"]] == ["applications"]
    assert card.facts["metrics"]["auc"] == 0.91
    assert [a["actor"] for a in card.facts["approvals"]] == ["bob"]
    assert card.facts["reports"] == {"explanation": [], "bias": [], "other": []}
    first = credit.edit_card("credit/1", "first draft", overview="Scores applications")
    second = credit.edit_card("credit/1", limitations="No data on applicants under 21")
    assert (first.revision, second.revision) == (1, 2)
    assert second.edited["overview"] == "Scores applications"
    assert second.edited["limitations"] == "No data on applicants under 21"
    assert [h["revision"] for h in second.history] == [1, 2]
    assert second.history[0]["comment"] == "first draft"
    [entry, _] = credit.audit_log("credit/1", action="card.")
    assert entry.action == "card.edit" and entry.actor == "alice"


def test_open_findings_and_reports_show_on_the_card(credit: clew.Client, as_user: AsUser) -> None:
    found = as_user("bob").add_finding("credit/1", "high", "Stress test missing")
    card = as_user("alice").card("credit/1")
    assert [f["id"] for f in card.facts["open_findings"]] == [found.id]
    assert card.facts["review"]["state"] == "never reviewed"


def test_a_script_in_a_field_renders_inert(credit: clew.Client) -> None:
    credit.edit_card("credit/1", overview=SCRIPT, owners=["dave", "<b>eve</b>"])
    page = credit.export_card("credit/1", "html").decode()
    assert "<script>" not in page and "<b>eve" not in page
    assert "&lt;script&gt;alert(&#x27;card&#x27;)&lt;/script&gt;" in page
    assert "default-src 'none'" in page


def test_the_sagemaker_shape_round_trips_the_edited_fields(credit: clew.Client) -> None:
    credit.edit_card(
        "credit/1",
        overview="Scores applications",
        intended_uses="Pre-screening retail credit",
        out_of_scope_uses="Mortgages",
        limitations="No data on applicants under 21",
        ethical_considerations="Age is excluded",
        owners="dave, erin",
        business_problem="Default risk",
    )
    exported = json.loads(credit.export_card("credit/1", "sagemaker"))
    assert set(exported) == set(rendering.SAGEMAKER_SECTIONS)
    assert exported["intended_uses"]["risk_rating"] == "High"
    assert exported["model_overview"]["model_owner"] == "dave, erin"
    assert exported["additional_information"]["caveats_and_recommendations"].startswith("No data")
    metrics = exported["evaluation_details"][0]["metric_groups"][0]["metric_data"]
    assert {"name": "auc", "type": "number", "value": 0.91} in metrics
    datasets = exported["training_details"]["training_job_details"]["training_datasets"]
    assert datasets[0].startswith("dataset:applications@sha256:")
    imported = credit.import_card("credit/1", exported, "round trip")
    assert imported.revision == 2
    assert imported.edited == credit.card("credit/1").edited
    assert imported.edited["out_of_scope_uses"] == "Mortgages"


def test_pdf_renders_without_a_browser(credit: clew.Client, tmp_path: Path) -> None:
    credit.edit_card("credit/1", overview="Scores applications — résumé ✓")
    data = credit.export_card("credit/1", "pdf")
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"accuracy": "0.99"}, "a card has no editable field accuracy"),
        ({"overview": 3}, "card field overview must be text"),
        ({"owners": [""]}, "card field owners must be a list"),
    ],
)
def test_bad_edits_are_one_sentence_and_write_nothing(
    credit: clew.Client, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        credit.edit_card("credit/1", **changes)
    assert credit.card("credit/1").revision == 0


def test_bad_imports_and_formats_are_refused(credit: clew.Client, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="model_details is not a SageMaker model card"):
        credit.import_card("credit/1", {"model_details": {}})
    broken = tmp_path / "card.json"
    broken.write_text("{not json")
    with pytest.raises(InvalidInputError, match="is not a JSON model card"):
        credit.import_card("credit/1", broken)
    with pytest.raises(InvalidInputError, match="cannot export a card as 'docx'"):
        credit.export_card("credit/1", "docx")
    assert credit.card("credit/1").revision == 0
