"""Shadow deployments: a challenger answers a copy of each request off the champion's path,
both are captured, and the report gives agreement and quality side by side."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import free_port
from fastapi.testclient import TestClient
from serving_support import challenger, clew_serve, iris_frame, register
from tamper import execute_sql
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client.loaded_model import LoadedModel
from clew.client.serving import create_inference_app
from clew.client.shadowing import ShadowSender
from clew.domain import ids
from clew.domain.deployments import ShadowPair
from clew.errors import IntegrityError, InvalidInputError, NotFoundError
from clew.service import record_check
from clew.store.location import Store

runner = CliRunner()


def serve_pair(client: clew.Client) -> tuple[LoadedModel, LoadedModel]:
    register(client)
    register(client, model=challenger())
    return client.load_model("iris/1"), client.load_model("iris/2")


def test_report_compares_shadow_and_champion_on_the_same_rows(client: clew.Client) -> None:
    champion, shadow = serve_pair(client)
    started = client.start_deployment(champion, "iris-api")
    beside = client.start_deployment(shadow, "iris-api", role="shadow", champion=started.deployment)
    sender = ShadowSender(shadow, beside.deployment.id, flush_seconds=0.05)
    api = TestClient(create_inference_app(champion, shadow=sender))
    features, target = iris_frame()
    answered: list[str] = []
    for start in range(0, 150, 30):
        rows = features.iloc[start : start + 30].to_dict(orient="records")
        response = api.post(
            "/predict", json={"inputs": rows}, headers={"X-Request-ID": f"r{start}"}
        )
        assert response.status_code == 200, response.text
        answered += response.json()["prediction_ids"]
    assert api.get("/health").json()["shadow"]["model"] == "iris/2"
    sender.close()
    assert sender.stats()["answered"] == 5 and sender.stats()["recorded"] == 5
    assert 'clew_shadow_requests_total{outcome="answered"} 5' in api.get("/metrics").text
    client.flush_captures()
    client.stop_deployment(beside)
    client.stop_deployment(started)

    report = clew.shadow_report("iris-api")
    ours, theirs = champion.raw.predict(features), shadow.raw.predict(features)
    assert (report.champion, report.shadow, report.requests) == ("iris/1", "iris/2", 5)
    assert report.paired_rows == report.compared == 150
    assert report.agreed == int((ours == theirs).sum()) and 0 < report.agreement < 1
    assert report.labelled == 0 and report.champion_quality == {}

    clew.log_labels(answered, target.tolist())
    labelled = clew.shadow_report("iris-api", deployment=beside.deployment.id)
    assert labelled.labelled == 150
    assert labelled.champion_quality["accuracy"] == pytest.approx((ours == target).mean())
    assert labelled.shadow_quality["accuracy"] == pytest.approx((theirs == target).mean())
    frame = labelled.to_pandas().set_index("figure")
    assert frame.loc["accuracy", "shadow"] < frame.loc["accuracy", "champion"]


def test_a_shadow_that_falls_behind_drops_and_counts(client: clew.Client) -> None:
    """Requests offered while the shadow's process is still loading its model overflow a
    two-request queue: they are dropped and counted, and every champion answer still comes."""
    champion, shadow = serve_pair(client)
    started = client.start_deployment(champion, "iris-api")
    beside = client.start_deployment(shadow, "iris-api", role="shadow", champion=started.deployment)
    sender = ShadowSender(shadow, beside.deployment.id, max_queued=2)
    api = TestClient(create_inference_app(champion, shadow=sender))
    features, _ = iris_frame()
    for _ in range(40):
        response = api.post("/predict", json={"inputs": features.head(2).to_dict("records")})
        assert response.status_code == 200
    counts = sender.stats()
    assert counts["dropped"] > 0 and counts["offered"] + counts["dropped"] == 40
    assert api.get("/health").json()["shadow"]["dropped"] == counts["dropped"]
    sender.close()
    assert sender.stats()["answered"] == counts["offered"]
    client.stop_deployment(beside)
    client.stop_deployment(started)


def test_report_refusals(client: clew.Client) -> None:
    champion, _ = serve_pair(client)
    started = client.start_deployment(champion, "iris-api")
    with pytest.raises(NotFoundError, match="endpoint iris-api never had a shadow"):
        clew.shadow_report("iris-api")
    with pytest.raises(InvalidInputError, match="as the champion of iris-api; name a shadow"):
        clew.shadow_report("iris-api", deployment=started.deployment.id)
    client.stop_deployment(started)


def test_clew_serve_with_a_shadow(client: clew.Client) -> None:
    serve_pair(client)
    client.promote("iris/1", "champion", new_alias=True)
    client.promote("iris/2", "challenger", new_alias=True)
    features, _ = iris_frame()
    with clew_serve("iris@champion", "--shadow", "iris@challenger", port=free_port()) as served:
        for start in (0, 50, 100):
            rows = features.iloc[start : start + 50].to_dict(orient="records")
            answer = httpx.post(f"{served.url}/predict", json={"inputs": rows}, timeout=30)
            assert answer.status_code == 200 and answer.json()["model"] == "iris/1"
        live = json.loads(runner.invoke(app, ["status", "-e", "iris", "-f", "json"]).stdout)
        assert [(d["ref"], d["role"]) for d in live] == [
            ("iris/1", "champion"),
            ("iris/2", "shadow"),
        ]
    assert "shadow iris/2 gets a copy of each request" in served.output()
    result = runner.invoke(app, ["shadow", "report", "iris", "-f", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["requests"] == 3 and report["compared"] == 150
    assert 0 < report["agreement"] < 1
    table = runner.invoke(app, ["shadow", "report", "iris"])
    assert "shadow iris/2 beside champion iris/1 on iris: 3 requests" in table.stdout


@pytest.mark.tampers
def test_pairs_are_audited_facts(client: clew.Client, store: Store) -> None:
    """The report a promotion rests on is computed from the pairs: a retried post stores a
    pair once, and a pair edited behind clew's back is refused by the report and named by
    ``clew audit verify``."""
    champion, shadow = serve_pair(client)
    started = client.start_deployment(champion, "iris-api")
    beside = client.start_deployment(shadow, "iris-api", role="shadow", champion=started.deployment)
    calls = [(ids.new_id(), ids.new_id()) for _ in range(3)]
    pairs = [ShadowPair(c, s, 2, f"r{i}", 1) for i, (c, s) in enumerate(calls)]
    shadows = client._service.shadows
    assert shadows.record_pairs(beside.deployment.id, pairs, client.actor) == 3
    assert shadows.record_pairs(beside.deployment.id, pairs[1:], client.actor) == 0  # a retry
    assert clew.shadow_report("iris-api").requests == 3
    assert record_check.verify_records(store)[1] == []

    execute_sql(
        store,
        "UPDATE shadow_pairs SET champion_call = :other WHERE shadow_call = :call",
        other=calls[0][0],
        call=calls[1][1],
    )
    with pytest.raises(IntegrityError, match=r"can not vouch for shadow deployment .* pairs"):
        clew.shadow_report("iris-api")
    _, problems = record_check.verify_records(store)
    assert [problem.table for problem in problems] == ["shadow_pairs"]
