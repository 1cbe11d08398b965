"""OpenLineage in: run events from the real openlineage-python client and as plain JSON,
paired into one run per runId, kept with their facets, bad ones refused whole."""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    datasource_dataset,
    schema_dataset,
    sql_job,
)
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)
from server_fixtures import RunningServer, serve, server_store
from sqlalchemy import func, select

import clew
from clew.domain.openlineage import run_id_for
from clew.errors import ConflictError, InvalidInputError
from clew.store import schema
from clew.store.location import Store

PRODUCER = "https://github.com/clew/tests"
WHEN = "2026-03-01T10:00:00.000Z"
LATER = "2026-03-01T10:05:00.000Z"


def event(
    event_type: str = "START",
    run_id: str | None = None,
    when: str = WHEN,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    job: str = "daily_orders",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": when,
        "run": {"runId": run_id or str(uuid.uuid4()), "facets": {}},
        "job": {"namespace": "warehouse", "name": job, "facets": {}},
        "inputs": inputs or [],
        "outputs": outputs or [],
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        **extra,
    }


def dataset(name: str, **facets: Any) -> dict[str, Any]:
    return {"namespace": "postgres://db:5432", "name": name, "facets": facets}


def rows(store: Store) -> dict[str, int]:
    with store.db.read() as connection:
        return {
            table.name: int(connection.execute(select(func.count()).select_from(table)).scalar())
            for table in (schema.runs, schema.artifacts, schema.edges, schema.audit_log)
        }


@pytest.fixture
def ol_server(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    for running in serve(*server_store(tmp_path)):
        yield running, running.user("airflow")


def real_client(url: str, token: str) -> OpenLineageClient:
    config = HttpConfig(
        url=url,
        compression=HttpCompression.GZIP,
        auth=ApiKeyTokenProvider({"apiKey": token}),
        retry={"total": 0},
    )
    return OpenLineageClient(transport=HttpTransport(config))


def test_the_real_client_over_gzip_with_a_bearer_token_pairs_start_and_complete(
    ol_server: tuple[RunningServer, str],
) -> None:
    running, token = ol_server
    client = real_client(running.url, token)
    run_uuid = str(uuid.uuid4())
    job = Job(
        namespace="warehouse",
        name="orders_daily",
        facets={
            "sql": sql_job.SQLJobFacet(
                query="INSERT INTO orders_daily SELECT day, sum(total) FROM orders GROUP BY day"
            )
        },
    )
    orders = InputDataset(
        namespace="postgres://db:5432",
        name="shop.public.orders",
        facets={
            "schema": schema_dataset.SchemaDatasetFacet(
                fields=[schema_dataset.SchemaDatasetFacetFields(name="total", type="NUMERIC")]
            ),
            "dataSource": datasource_dataset.DatasourceDatasetFacet(
                name="shop", uri="postgres://db:5432"
            ),
        },
    )
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            "revenue": column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace="postgres://db:5432", name="shop.public.orders", field="total"
                    )
                ]
            )
        }
    )
    daily = OutputDataset(
        namespace="postgres://db:5432",
        name="shop.public.orders_daily",
        facets={"columnLineage": lineage},
    )
    client.emit(
        RunEvent(
            eventType=RunState.START,
            eventTime=WHEN,
            run=Run(runId=run_uuid),
            job=job,
            inputs=[orders],
            producer=PRODUCER,
        )
    )
    client.emit(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=LATER,
            run=Run(runId=run_uuid),
            job=job,
            inputs=[orders],
            outputs=[daily],
            producer=PRODUCER,
        )
    )

    reader = clew.connect(running.url, token=token)
    run = reader.get_run(run_id_for(run_uuid))
    assert (run.status, run.name, run.user) == ("FINISHED", "orders_daily", "airflow")
    assert run.end_ms - run.start_ms == 5 * 60 * 1000
    kept = run.properties["openlineage"]
    assert kept["runId"] == run_uuid and kept["events"] == {"START": 1, "COMPLETE": 1}
    assert kept["job_facets"]["sql"]["query"].startswith("INSERT INTO orders_daily")
    up = reader.lineage.upstream(f"run:{run.id}").to_pandas()
    assert set(zip(up.source_name, up.association, strict=True)) == {
        ("shop.public.orders", "ContributedTo")
    }
    down = reader.lineage.downstream(f"run:{run.id}").far_nodes("dataset")
    assert down["name"].tolist() == ["shop.public.orders_daily"]
    node = down["properties"].iloc[0]["openlineage"]
    assert node["facets"]["columnLineage"]["fields"]["revenue"]["inputFields"][0]["field"] == (
        "total"
    )
    derived = reader.lineage.upstream(down["ref"].iloc[0], max_depth=1).to_pandas()
    assert "DerivedFrom" in set(derived.association)
    reader.close()


def test_a_token_is_required_and_a_viewer_may_not_write(
    ol_server: tuple[RunningServer, str],
) -> None:
    running, _ = ol_server
    viewer = running.user("reader", "viewer")
    with running.http() as anonymous:
        assert anonymous.post("/api/v1/lineage", json=event()).status_code == 401
    with running.http(viewer) as http:
        answer = http.post("/api/v1/lineage", json=event())
    assert answer.status_code == 403 and answer.json()["code"] == "policy_violation"


def test_a_gzip_bomb_is_refused_at_the_body_limit_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    for running in serve(*server_store(tmp_path), max_json_bytes=1024 * 1024):
        token = running.user("airflow")
        before = rows(running.store)
        squeezer = zlib.compressobj(9, wbits=31)
        zeros = b"\0" * (1024 * 1024)
        bomb = b"".join(squeezer.compress(zeros) for _ in range(64)) + squeezer.flush()
        assert len(bomb) < 1024 * 1024 // 8
        with running.http(token) as http:
            answer = http.post(
                "/api/v1/lineage",
                content=bomb,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        assert answer.status_code == 413, answer.text
        assert answer.json()["code"] == "payload_too_large"
        assert "inflates to more than 1048576 bytes" in answer.json()["message"]
        assert rows(running.store) == before


def _deep_event(levels: int) -> dict[str, Any]:
    """An event with a run facet nested ``levels`` deep, whose strings hold brackets, quotes
    and backslashes that must not count as nesting (the bound is read off the JSON text)."""
    nested: Any = {"_producer": 'p "[[{" \\', "note": "]]}}"}
    for _ in range(levels):
        nested = {"next": [nested, '\\"[']}
    made = event()
    made["run"]["facets"]["deep"] = nested
    return made


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"{not json", {}, 400, "the body is not JSON"),
        (b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
        (
            gzip.compress(json.dumps(event()).encode())[:-12],
            {"Content-Encoding": "gzip"},
            400,
            "ends early",
        ),
        (json.dumps(event()).encode(), {"Content-Encoding": "br"}, 415, "not supported"),
        (json.dumps(_deep_event(40)).encode(), {}, 400, "nested deeper than 32 levels"),
    ],
)
def test_a_body_that_is_not_an_event_gets_one_sentence(
    ol_server: tuple[RunningServer, str],
    body: bytes,
    headers: dict[str, str],
    status: int,
    words: str,
) -> None:
    running, token = ol_server
    before = rows(running.store)
    with running.http(token) as http:
        answer = http.post(
            "/api/v1/lineage", content=body, headers={"Content-Type": "application/json", **headers}
        )
    assert answer.status_code == status, answer.text
    assert words in answer.json()["message"] and "Traceback" not in answer.text
    assert rows(running.store) == before


def test_brackets_quotes_and_backslashes_inside_strings_do_not_count_as_nesting(
    ol_server: tuple[RunningServer, str],
) -> None:
    """14 levels of real nesting, with strings full of brackets, is within the 32-level bound."""
    running, token = ol_server
    with running.http(token) as http:
        answer = http.post("/api/v1/lineage", json=_deep_event(5))
    assert answer.status_code < 300, answer.text


@pytest.mark.parametrize(
    ("final", "status"), [("COMPLETE", "FINISHED"), ("FAIL", "FAILED"), ("ABORT", "KILLED")]
)
def test_events_of_one_run_pair_into_one_run_across_calls(
    client: clew.Client, store: Store, final: str, status: str
) -> None:
    run_uuid = str(uuid.uuid4())
    client.openlineage.receive(event("START", run_uuid, inputs=[dataset("orders")]))
    started = client.get_run(run_id_for(run_uuid))
    assert started.status == "RUNNING"
    client.openlineage.receive(event("RUNNING", run_uuid, when="2026-03-01T10:01:00Z"))
    result = client.openlineage.receive(
        event(final, run_uuid, when=LATER, outputs=[dataset("orders_daily")])
    )
    assert result.runs == {run_uuid: run_id_for(run_uuid)}
    run = client.get_run(run_id_for(run_uuid))
    assert run.status == status and run.end_ms is not None
    assert run.properties["openlineage"]["events"] == {"START": 1, "RUNNING": 1, final: 1}
    assert rows(store)["runs"] == 1
    names = client.lineage.upstream(f"run:{run.id}").to_pandas()["source_name"]
    assert names.tolist() == ["orders"]


def test_a_batch_writes_every_run_once_and_the_same_dataset_is_one_node(
    client: clew.Client, store: Store
) -> None:
    events = []
    for index in range(20):
        run_uuid = str(uuid.uuid4())
        events.append(event("START", run_uuid, inputs=[dataset("orders")], job=f"job_{index}"))
        events.append(
            event(
                "COMPLETE",
                run_uuid,
                when=LATER,
                outputs=[dataset(f"out_{index}")],
                job=f"job_{index}",
            )
        )
    result = client.openlineage.receive(events)
    assert (result.events, len(result.runs), result.datasets) == (40, 20, 21)
    again = client.openlineage.receive(events[:2])
    assert again.edges == 0
    down = client.lineage.downstream("dataset:orders", max_depth=1).to_pandas()
    assert len(down) == 20
    assert {client.get_run(run_id).status for run_id in result.runs.values()} == {"FINISHED"}
    assert rows(store)["runs"] == 20


def test_column_lineage_sent_again_is_one_edge_recorded_once(client: clew.Client) -> None:
    """Each run of a job repeats its column lineage: the DerivedFrom edge is written and
    audited once, whether the repeat comes in the same batch or a later call."""
    lineage = {"fields": {"revenue": {"inputFields": [{**dataset("orders"), "field": "t"}]}}}

    def run(job: str) -> list[dict[str, Any]]:
        run_uuid = str(uuid.uuid4())
        output = dataset("daily", columnLineage=lineage)
        return [
            event("START", run_uuid, inputs=[dataset("orders")], job=job),
            event("COMPLETE", run_uuid, when=LATER, outputs=[output], job=job),
        ]

    first = client.openlineage.receive([*run("daily_a"), *run("daily_b")])
    again = client.openlineage.receive(run("daily_c"))
    up = client.lineage.upstream("dataset:daily", max_depth=1).to_pandas()
    assert up.association.tolist().count("DerivedFrom") == 1
    # Two runs x (experiment, input, output) plus the one DerivedFrom; then three more.
    assert (first.edges, again.edges) == (7, 3)
    assert client.verify_audit().ok


def test_an_event_that_completes_first_still_makes_one_finished_run(client: clew.Client) -> None:
    run_uuid = str(uuid.uuid4())
    client.openlineage.receive(event("COMPLETE", run_uuid, when=LATER))
    client.openlineage.receive(event("START", run_uuid))
    run = client.get_run(run_id_for(run_uuid))
    assert run.status == "FINISHED"
    assert run.end_ms - run.start_ms == 5 * 60 * 1000


def test_unknown_facets_are_kept_as_they_came(client: clew.Client) -> None:
    run_uuid = str(uuid.uuid4())
    custom = {
        "_producer": PRODUCER,
        "_schemaURL": "https://example.com/Quality.json",
        "rows_checked": 1200,
        "nested": {"passed": True},
    }
    client.openlineage.receive(
        event("COMPLETE", run_uuid, outputs=[dataset("scored", quality=custom)])
    )
    run = client.get_run(run_id_for(run_uuid))
    kept = run.properties["openlineage"]["outputs"]["postgres://db:5432/scored"]
    assert kept["quality"] == custom


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"run": {"runId": "run-42"}}, "runId 'run-42' is not a UUID"),
        ({"eventType": "FINISHED"}, "eventType 'FINISHED' is unknown"),
        ({"eventTime": "yesterday"}, "is not an ISO 8601 time"),
        (
            {"inputs": [dataset("orders", schema={"fields": "total"})]},
            "facet 'schema': fields must be a list",
        ),
        ({"inputs": [dataset("orders", quality=[1, 2])]}, "facet 'quality' must be a JSON object"),
        (
            {"outputs": [dataset("daily", columnLineage={"fields": []})]},
            "fields must map each output column",
        ),
        ({"job": {"namespace": "warehouse"}}, "job name must be a non-empty string"),
    ],
)
def test_a_bad_event_in_a_batch_is_named_and_nothing_is_written(
    client: clew.Client, store: Store, bad: dict[str, Any], words: str
) -> None:
    before = rows(store)
    good = event("START", inputs=[dataset("orders")])
    broken = {**event("START"), **bad}
    with pytest.raises(InvalidInputError, match="event #1") as refused:
        client.openlineage.receive([good, broken])
    assert words in str(refused.value)
    assert rows(store) == before


def test_a_run_id_of_a_run_clew_made_itself_cannot_be_taken_over(
    client: clew.Client, store: Store
) -> None:
    with client.start_run(experiment="churn", name="train") as run:
        pass
    hijack = str(uuid.UUID(int=_ulid_int(run.id)))
    before = rows(store)
    with pytest.raises(ConflictError, match="was not recorded from OpenLineage"):
        client.openlineage.receive(event("FAIL", hijack))
    assert client.get_run(run.id).status == "FINISHED"
    assert rows(store) == before


def test_a_run_id_reused_by_another_job_is_refused(client: clew.Client) -> None:
    run_uuid = str(uuid.uuid4())
    client.openlineage.receive(event("START", run_uuid, job="orders_daily"))
    with pytest.raises(ConflictError, match="belongs to job 'orders_daily'"):
        client.openlineage.receive(event("COMPLETE", run_uuid, job="something_else"))


def test_a_dataset_event_is_refused_in_one_sentence(client: clew.Client) -> None:
    static = {"eventTime": WHEN, "dataset": dataset("orders"), "producer": PRODUCER}
    with pytest.raises(InvalidInputError, match="has no run: clew takes OpenLineage RunEvents"):
        client.openlineage.receive(static)


def _ulid_int(text: str) -> int:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for char in text:
        value = value * 32 + alphabet.index(char)
    return value
