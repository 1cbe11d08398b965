"""Regulator exports from real records: the SR 11-7 inventory (CSV and XLSX) with validation
status, findings and lineage dependencies, and the signed Annex IV pack whose statements name
the records they came from. Runs embedded, on PostgreSQL + S3 and through a server."""

from __future__ import annotations

import copy
import io

import numpy as np
import pandas as pd
import pytest
from server_fixtures import AsUser
from sklearn.linear_model import LinearRegression, LogisticRegression

import clew
from clew.errors import InvalidInputError
from clew.service import exports


def _register(
    client: clew.Client, name: str, seed: int, *, base: clew.ArtifactRecord | None = None
) -> clew.ArtifactRecord:
    """Register ``name``; with ``base``, its run also consumes ``base``'s model (a stacked
    model, so lineage makes ``base`` an upstream dependency)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(40, 2)), columns=["x", "y"])
    with client.start_run("credit", f"train-{name}") as run:
        run.log_input(frame, name=f"{name}-data")
        if base is not None:
            run.log_input(base)
        run.log_metric("auc", 0.8 + seed / 100)
        fitted = LogisticRegression().fit(frame, frame["x"] > 0)
        artifact = run.log_model(fitted, name=f"{name}-model")
    client.register_model(artifact, name, owner="dave", risk_tier="high")
    return artifact


@pytest.fixture
def two_models(client: clew.Client, as_user: AsUser) -> clew.Client:
    alice = as_user("alice")
    alice.set_policy("reviews:\n  high: 180d\n")
    base = _register(alice, "scores", 1)
    _register(alice, "credit", 2, base=base)
    alice.edit_card("credit/1", overview="Retail credit pre-screening", limitations="No SMEs")
    bob = as_user("bob")
    bob.review_model("credit/1", "initial validation")
    bob.add_finding("credit/1", "high", "No stress test", due="2027-06-30")
    return as_user("alice")


def test_the_inventory_has_a_row_per_model_with_status_findings_and_dependencies(
    two_models: clew.Client,
) -> None:
    frame = two_models.sr11_7_inventory()
    assert list(frame.columns) == exports.INVENTORY_COLUMNS
    credit = frame.set_index("model").loc["credit"]
    assert credit["purpose"] == "Retail credit pre-screening"
    assert credit["developer"] == "alice" and credit["validator"] == "bob"
    assert credit["validation_status"] == "current" and credit["risk_tier"] == "high"
    assert (credit["open_findings"], credit["open_high_findings"]) == (1, 1)
    assert credit["upstream_models"] == "scores" and credit["limitations"] == "No SMEs"
    scores = frame.set_index("model").loc["scores"]
    assert scores["downstream_models"] == "credit"
    assert scores["validation_status"] == "never reviewed"


def test_the_inventory_exports_as_csv_and_xlsx(two_models: clew.Client) -> None:
    read = pd.read_csv(io.BytesIO(two_models.export_sr11_7("csv")))
    assert sorted(read["model"]) == ["credit", "scores"]
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(two_models.export_sr11_7("xlsx"))).active
    rows = list(sheet.values)
    assert list(rows[0]) == exports.INVENTORY_COLUMNS and len(rows) == 3
    with pytest.raises(InvalidInputError, match="cannot export the inventory as 'pdf'"):
        two_models.export_sr11_7("pdf")


def test_a_formula_in_a_field_stays_text_in_the_spreadsheet(two_models: clew.Client) -> None:
    two_models.edit_card("credit/1", overview='=HYPERLINK("http://evil")')
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(two_models.export_sr11_7("xlsx"))).active
    cells = [cell for row in sheet.values for cell in row if isinstance(cell, str)]
    assert '\'=HYPERLINK("http://evil")' in cells


def test_the_annex_iv_pack_links_every_statement_and_is_signed(
    two_models: clew.Client,
) -> None:
    pack = two_models.annex_iv("credit/1")
    assert pack["ref"] == "credit/1" and pack["to_write"]
    sections = pack["sections"]
    assert set(sections) == {
        "general_description",
        "development_process",
        "data_and_provenance",
        "validation_and_testing",
        "changes_since_previous_version",
        "third_party_components",
        "monitoring_plan",
        "log_retention",
    }
    for statements in sections.values():
        assert statements and all(s["text"] and s["source"]["ref"] for s in statements)
    texts = [s["text"] for s in sections["general_description"]]
    assert "Overview: Retail credit pre-screening" in texts
    kinds = {s["source"]["kind"] for s in sections["validation_and_testing"]}
    assert {"model_version", "finding", "review"} <= kinds
    [component] = sections["third_party_components"]
    assert component["text"] == "Pre-trained component model:scores-model."
    public = pack["signature"]["public_key"].encode()
    assert exports.verify_pack(pack, public)
    altered = copy.deepcopy(pack)
    altered["sections"]["general_description"][0]["text"] = "a different model"
    assert not exports.verify_pack(altered, public)


def test_changes_since_the_previous_version_come_from_lineage(two_models: clew.Client) -> None:
    rng = np.random.default_rng(9)
    frame = pd.DataFrame(rng.normal(size=(40, 2)), columns=["x", "y"])
    with two_models.start_run("credit", "retrain") as run:
        run.log_input(frame, name="credit-data")
        run.log_metric("auc", 0.85)
        artifact = run.log_model(LinearRegression().fit(frame, frame["x"]), name="credit-model")
    two_models.register_model(artifact, "credit")
    changes = two_models.annex_iv("credit/2")["sections"]["changes_since_previous_version"]
    texts = [s["text"] for s in changes]
    assert any(t.startswith("dataset:credit-data changed from sha256:") for t in texts)
    assert "Metric auc went from 0.82 in credit/1 to 0.85." in texts
