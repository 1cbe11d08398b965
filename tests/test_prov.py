"""PROV-JSON export: a thread written as W3C PROV-JSON that the reference ``prov`` library
reads back with the same entities, activities and relations."""

from __future__ import annotations

import json

import pandas as pd
from prov.model import ProvDocument
from typer.testing import CliRunner

import clew
from clew.cli.main import app


def thread(client: clew.Client) -> tuple[str, str, str]:
    with client.start_run(experiment="churn", name="prep", kind="processing") as prep:
        raw = prep.log_input(pd.DataFrame({"tenure": [1, 5]}), name="churn-raw")
        train_set = prep.log_output(
            pd.DataFrame({"tenure": [0.1, 0.5]}), name="churn-train", derived_from=[raw]
        )
    return prep.id, raw.id, train_set.digest


def test_a_thread_is_valid_prov_json_with_every_relation(client: clew.Client) -> None:
    run_id, raw_id, digest = thread(client)
    document = client.lineage.prov(f"dataset:churn-train@{digest}")
    parsed = ProvDocument.deserialize(content=json.dumps(document), format="json")
    assert parsed.get_provn().startswith("document")
    activity = document["activity"][f"clew:run/{run_id}"]
    assert activity["prov:label"] == "prep" and "prov:startTime" in activity
    assert activity["prov:endTime"] >= activity["prov:startTime"]
    used = {(u["prov:activity"], u["prov:entity"]) for u in document["used"].values()}
    assert (f"clew:run/{run_id}", f"clew:artifact/{raw_id}") in used
    generated = [g["prov:activity"] for g in document["wasGeneratedBy"].values()]
    assert generated == [f"clew:run/{run_id}"]
    derived = list(document["wasDerivedFrom"].values())
    assert derived[0]["prov:usedEntity"] == f"clew:artifact/{raw_id}"
    agents = document["agent"]
    assert agents == {
        f"clew:user/{client.get_run(run_id).user}": {
            "prov:type": "prov:Person",
            "prov:label": client.get_run(run_id).user,
        }
    }
    records = {
        record.identifier.localpart
        for record in parsed.get_records()
        if record.identifier is not None
    }
    assert f"run/{run_id}" in records and f"artifact/{raw_id}" in records


def test_the_cli_writes_prov_json(client: clew.Client) -> None:
    run_id, _, _ = thread(client)
    result = CliRunner().invoke(app, ["lineage", f"run:{run_id}", "--format", "prov-json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["prefix"]["prov"] == "http://www.w3.org/ns/prov#"
    assert f"clew:run/{run_id}" in document["activity"]
    ProvDocument.deserialize(content=result.output, format="json")
