"""Metric points on the wire: the SDK's Arrow IPC body and the API's JSON body follow one rule
set on a real server; a body that breaks it is refused whole with a clear message."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import httpx
import pyarrow as pa
import pytest

from clew.client.remote_runs import _metrics_body
from clew.server.arrow_bodies import ARROW_STREAM
from clew.server.limits import MAX_METRIC_POINTS

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)
ARROW = {"Content-Type": ARROW_STREAM}


@pytest.fixture
def alice(server: RunningServer) -> httpx.Client:
    with server.http(server.user("alice")) as client:
        yield client


def _run(client: httpx.Client) -> str:
    return str(client.post("/api/v1/runs", json={"name": "wire"}).json()["id"])


def _history(client: httpx.Client, run_id: str, key: str) -> list[list[Any]]:
    answer = client.get(f"/api/v1/runs/{run_id}/metric-history", params={"key": key})
    return list(answer.json())


def _stream(table: pa.Table, options: pa.ipc.IpcWriteOptions | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _columns(**overrides: pa.Array) -> pa.Table:
    columns = {
        "key": pa.array(["loss", "loss"]),
        "value": pa.array([0.5, 0.25]),
        "step": pa.array([0, 1], pa.int64()),
        "timestamp_ms": pa.array([1000, 2000], pa.int64()),
    } | overrides
    return pa.table(columns)


def test_arrow_and_json_bodies_store_the_same_points(alice: httpx.Client) -> None:
    run_id = _run(alice)
    points = [("loss", 0.5, 0, 1000), ("loss", math.nan, 1, 2000), ("loss", math.inf, 2, 3000)]
    path = f"/api/v1/runs/{run_id}/metrics"
    arrow = alice.post(path, content=_metrics_body(points), headers=ARROW)
    as_json = [["acc", value, step, stamp] for _key, value, step, stamp in points]
    json_body = json.dumps({"points": as_json}).encode()  # NaN and Infinity, as the API allows
    plain = alice.post(path, content=json_body, headers={"Content-Type": "application/json"})
    assert (arrow.status_code, plain.status_code) == (204, 204)
    loss, acc = _history(alice, run_id, "loss"), _history(alice, run_id, "acc")
    assert (
        [point[1:] for point in loss]
        == [point[1:] for point in acc]
        == [
            [0, 1000],
            [1, 2000],
            [2, 3000],
        ]
    )
    assert loss[0][0] == acc[0][0] == 0.5
    assert math.isnan(loss[1][0]) and math.isnan(acc[1][0])
    assert loss[2][0] == acc[2][0] == math.inf


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_stream(_columns(step=pa.array([0.0, 1.0]))), "step (double)"),
        (_stream(_columns().drop_columns(["timestamp_ms"])), "this one has key (string)"),
        (
            _stream(_columns(value=pa.array([0.5, None]))),
            "column value of the metrics body has nulls",
        ),
        (_stream(_columns(key=pa.array(["loss", ""]))), "1 to 250 characters"),
        (
            _stream(_columns(key=pa.array(["loss", "k" * 251]))),
            "metric keys are 1 to 250 characters",
        ),
        (b"not an arrow stream", "not a readable Arrow IPC stream"),
        (_stream(_columns(key=pa.array(["loss", "a\x00b"]))), "is not allowed"),
    ],
    ids=[
        "float-steps",
        "no-timestamps",
        "null-value",
        "empty-key",
        "long-key",
        "garbage",
        "nul-in-key",
    ],
)
def test_a_bad_arrow_body_is_refused_whole(alice: httpx.Client, body: bytes, message: str) -> None:
    run_id = _run(alice)
    response = alice.post(f"/api/v1/runs/{run_id}/metrics", content=body, headers=ARROW)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert message in response.json()["message"]
    assert _history(alice, run_id, "loss") == []


def test_too_many_arrow_points_are_refused(alice: httpx.Client) -> None:
    run_id = _run(alice)
    count = MAX_METRIC_POINTS + 1
    points = [("m", 1.0, step, 1) for step in range(count)]
    response = alice.post(
        f"/api/v1/runs/{run_id}/metrics", content=_metrics_body(points), headers=ARROW
    )
    assert response.status_code == 400
    assert f"holds more than {MAX_METRIC_POINTS} rows" in response.json()["message"]
    assert _history(alice, run_id, "m") == []


def test_malformed_json_metrics_are_refused(alice: httpx.Client) -> None:
    run_id = _run(alice)
    response = alice.post(
        f"/api/v1/runs/{run_id}/metrics",
        content=b'{"points": [["m", 1.0, 0, 1]',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "Invalid JSON" in response.json()["message"]
    assert _history(alice, run_id, "m") == []


def test_the_schema_publishes_both_metric_bodies(alice: httpx.Client) -> None:
    schema = alice.get("/api/v1/openapi.json").json()
    content = schema["paths"]["/api/v1/runs/{run_id}/metrics"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", ARROW_STREAM}
    points = content["application/json"]["schema"]["properties"]["points"]
    assert points["maxItems"] == MAX_METRIC_POINTS
