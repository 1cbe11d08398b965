"""Serving deployments: recorded start to stop, audited, a node in lineage, and "which version
answered endpoint E at time T" as one call (SDK) and one command (CLI)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable

import httpx
import pytest
from conftest import free_port
from serving_support import challenger, clew_serve, register
from tamper import execute_sql
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.errors import ConflictError, IntegrityError, InvalidInputError, PolicyError
from clew.store.location import Store

runner = CliRunner()


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def test_status_at_a_time_names_the_version_that_answered(client: clew.Client) -> None:
    register(client)
    register(client, model=challenger())
    first = client.start_deployment(client.load_model("iris/1"), "iris-api", address="a:1")
    time.sleep(0.01)
    during_first = first.deployment.started_ms + 5
    shadow = client.start_deployment(
        client.load_model("iris/2"), "iris-api", role="shadow", champion=first.deployment
    )
    client.stop_deployment(shadow)
    stopped = client.stop_deployment(first)
    assert stopped.stopped_ms is not None and stopped.stopped_by == client.actor

    answered = clew.status("iris-api", at=during_first)
    assert [(d.ref, d.role) for d in answered] == [("iris/1", "champion")]
    both = clew.status("iris-api", at=shadow.deployment.started_ms)
    assert [(d.ref, d.role) for d in both] == [("iris/1", "champion"), ("iris/2", "shadow")]
    assert both[1].champion_id == first.deployment.id
    assert list(clew.status(at=iso(first.deployment.started_ms - 1000))) == []
    assert list(clew.status("iris-api")) == []  # stopped: nothing answers now
    frame = clew.status(at=dt.datetime.fromtimestamp(during_first / 1000, tz=dt.UTC)).to_pandas()
    assert list(frame["model"]) == ["iris/1"] and list(frame["endpoint"]) == ["iris-api"]
    assert [d.ref for d in clew.deployments("iris-api")] == ["iris/2", "iris/1"]

    run = client.get_run(first.deployment.run_id or "")
    assert run.kind == "deployment" and run.status == "FINISHED"
    downstream = client.lineage.downstream("iris/1", max_depth=2).to_pandas()
    assert run.id in set(downstream["destination_id"])


def test_refusals_are_one_sentence(
    client: clew.Client, as_user: Callable[..., clew.Client]
) -> None:
    register(client)
    model = client.load_model("iris/1")
    with pytest.raises(InvalidInputError, match="endpoint 'no spaces' is not a valid name"):
        client.start_deployment(model, "no spaces")
    with pytest.raises(InvalidInputError, match="is not an ISO 8601 time"):
        clew.status("iris-api", at="yesterday")
    serving = client.start_deployment(model, "iris-api")
    client.stop_deployment(serving)
    with pytest.raises(ConflictError, match="already stopped"):
        client.stop_deployment(serving)
    as_user("bob").reject("iris/1", "leaks the label")
    with pytest.raises(PolicyError, match="rejected"):
        client._service.deployments.start("iris-api", "iris/1", client.actor)


@pytest.mark.tampers
def test_an_edited_deployment_is_refused(client: clew.Client, store: Store) -> None:
    register(client)
    register(client, model=challenger())
    serving = client.start_deployment(client.load_model("iris/1"), "iris-api")
    other = client.get_version("iris/2")
    execute_sql(
        store,
        "UPDATE deployments SET version_id = :other WHERE id = :id",
        other=other.id,
        id=serving.deployment.id,
    )
    with pytest.raises(IntegrityError, match="deployment"):
        clew.status("iris-api")


def test_clew_serve_records_its_deployment_for_clew_status(client: clew.Client) -> None:
    register(client)
    with clew_serve("iris/1", "--endpoint", "iris-api", port=free_port()) as served:
        assert httpx.get(f"{served.url}/health", timeout=10).status_code == 200
        live = json.loads(
            runner.invoke(app, ["status", "--endpoint", "iris-api", "-f", "json"]).stdout
        )
    assert [(d["ref"], d["role"], d["stopped_at"]) for d in live] == [("iris/1", "champion", None)]
    started = live[0]["started_at"]
    later = runner.invoke(app, ["status", "--at", started, "-e", "iris-api", "-f", "json"])
    assert later.exit_code == 0, later.output
    [record] = json.loads(later.stdout)
    assert record["ref"] == "iris/1" and record["stopped_at"] is not None
    table = runner.invoke(app, ["status", "--at", started])
    assert "iris-api" in table.stdout and "iris/1" in table.stdout
    before = runner.invoke(app, ["status", "--at", "2020-01-01T00:00:00Z"])
    assert before.stdout.strip() == "no deployment answered any endpoint at 2020-01-01T00:00:00Z"
    both = runner.invoke(app, ["status", "iris/1", "--at", started])
    assert both.exit_code == 1 and "not both" in both.stderr
