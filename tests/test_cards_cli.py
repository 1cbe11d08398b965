"""``clew card show|edit|export|import`` and ``clew export sr11-7|annex-iv`` through the real
command: files written, JSON shapes, one-sentence errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import AsUser
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import clew
from clew.cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})


def ok(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def registered(client: clew.Client, as_user: AsUser) -> clew.Client:
    alice = as_user("alice")
    features, target = make_classification(n_samples=60, n_features=4, random_state=3)
    with alice.start_run("credit", "train") as run:
        artifact = run.log_model(LogisticRegression().fit(features, target), name="credit-lr")
    alice.register_model(artifact, "credit", owner="dave", risk_tier="medium")
    return alice


def test_edit_show_and_export_a_card(registered: clew.Client, tmp_path: Path) -> None:
    edited = ok("card", "edit", "credit/1", "--set", "overview=Scores <b>apps</b>", "-c", "v1")
    assert "revision 1" in edited.stdout
    shown = json.loads(ok("card", "show", "credit/1", "--format", "json").stdout)
    assert shown["edited"]["overview"] == "Scores <b>apps</b>" and shown["revision"] == 1
    page = tmp_path / "card.html"
    ok("card", "export", "credit/1", "--format", "html", "-o", str(page))
    assert "Scores &lt;b&gt;apps&lt;/b&gt;" in page.read_text()
    sagemaker = json.loads(ok("card", "export", "credit/1", "--format", "sagemaker").stdout)
    assert sagemaker["intended_uses"]["risk_rating"] == "Medium"
    sagemaker["additional_information"]["caveats_and_recommendations"] = "Small sample"
    card_file = tmp_path / "sagemaker.json"
    card_file.write_text(json.dumps(sagemaker))
    assert "revision 2" in ok("card", "import", "credit/1", str(card_file)).stdout
    assert registered.card("credit/1").edited["limitations"] == "Small sample"


def test_bad_card_commands_are_one_sentence(registered: clew.Client) -> None:
    result = runner.invoke(app, ["card", "edit", "credit/1", "--set", "colour=red"])
    assert result.exit_code == 1 and "a card has no editable field colour" in result.stderr
    result = runner.invoke(app, ["card", "edit", "credit/1", "--set", "overview"])
    assert result.exit_code == 1 and "is not FIELD=TEXT" in result.stderr
    assert "Traceback" not in result.output


def test_export_the_inventory_and_an_annex_iv_pack(registered: clew.Client, tmp_path: Path) -> None:
    inventory = ok("export", "sr11-7").stdout.splitlines()
    assert inventory[0].startswith("id,model,purpose,owner") and len(inventory) == 2
    pack_file = tmp_path / "pack.json"
    written = ok("export", "annex-iv", "credit/1", "-o", str(pack_file))
    pack = json.loads(pack_file.read_text())
    assert pack["ref"] == "credit/1" and pack["digest"] in written.stdout
    result = runner.invoke(app, ["export", "sr11-7", "--format", "ods"])
    assert result.exit_code == 1 and "cannot export the inventory as 'ods'" in result.stderr
