"""OpenLineage ingest through a real ``clew server``: events per second and CPU per event.

A ``clew server`` subprocess on SQLite (``--workers 1``) receives OpenLineage RunEvents, each
run a START (one input dataset, schema facet) and a COMPLETE (one output dataset, column
lineage facet) sharing its ``runId``:

* **standard transport**: openlineage-python's ``HttpTransport`` (gzip, bearer token), one
  event per request, as Airflow, Spark and dbt send them;
* **batched**: the same events, ``--batch`` per request (a JSON list, gzip), clew's extension
  of the endpoint for bulk senders and backfills.

Each row reports events/s (wall clock) and, in the note, CPU milliseconds per 1,000 events of
the server's process group and of this process (the sender), read in the same run, so the
figures mean something on a busy machine too. There is no peer to race (Marquez needs a JVM
and PostgreSQL); the target is the issue's absolute ≥ 5,000 events/s.

    uv run --group bench python benchmarks/bench_openlineage.py [--quick] [--events N]
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from bench_server import CpuMeter, clew_server
from openlineage.client import OpenLineageClient
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)
from report import Result, finish, parser, stopwatch

TARGET = 5_000.0
PRODUCER = "https://github.com/clew/benchmarks"


def events(count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` events: START/COMPLETE pairs of one job each, spread over 50 source tables."""
    found = []
    for index in range(count // 2):
        run_id = str(uuid.uuid4())
        source = {
            "namespace": "postgres://db:5432",
            "name": f"shop.public.orders_{index % 50}",
            "facets": {
                "schema": {
                    "_producer": PRODUCER,
                    "_schemaURL": "s",
                    "fields": [{"name": "total", "type": "NUMERIC"}],
                }
            },
        }
        target = {
            "namespace": "postgres://db:5432",
            "name": f"shop.daily.{tag}_{index}",
            "facets": {
                "columnLineage": {
                    "_producer": PRODUCER,
                    "_schemaURL": "s",
                    "fields": {
                        "revenue": {
                            "inputFields": [
                                {
                                    "namespace": source["namespace"],
                                    "name": source["name"],
                                    "field": "total",
                                }
                            ]
                        }
                    },
                }
            },
        }
        for event_type, minute, inputs, outputs in (
            ("START", "00", [source], []),
            ("COMPLETE", "05", [source], [target]),
        ):
            found.append(
                {
                    "eventType": event_type,
                    "eventTime": f"2026-03-01T10:{minute}:00.000Z",
                    "run": {"runId": run_id, "facets": {}},
                    "job": {"namespace": "warehouse", "name": f"{tag}_{index}", "facets": {}},
                    "inputs": inputs,
                    "outputs": outputs,
                    "producer": PRODUCER,
                    "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                }
            )
    return found


def standard(url: str, token: str, batch: list[dict[str, Any]]) -> None:
    """One request per event through openlineage-python's own HTTP transport."""
    config = HttpConfig(
        url=url,
        compression=HttpCompression.GZIP,
        auth=ApiKeyTokenProvider({"apiKey": token}),
        timeout=30.0,
    )
    transport = HttpTransport(config)
    client = OpenLineageClient(transport=transport)
    for event in batch:
        # The transport takes the client's event objects; a dict goes through the same path.
        transport.emit(event)  # type: ignore[arg-type]
    client.close()


def batched(url: str, token: str, batch: list[dict[str, Any]], size: int) -> None:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for start in range(0, len(batch), size):
            body = gzip.compress(json.dumps(batch[start : start + size]).encode(), compresslevel=3)
            answer = http.post("/api/v1/lineage", content=body)
            answer.raise_for_status()


def measure(name: str, meter: CpuMeter, count: int, send: Any) -> Result:
    before = meter.read()
    with stopwatch() as elapsed:
        send()
    spent = meter.spent(before)
    per_thousand = {who: 1000 * 1000 * seconds / count for who, seconds in spent.items()}
    note = ", ".join(f"{who} {ms:.0f} ms CPU per 1k events" for who, ms in per_thousand.items())
    return Result(
        "openlineage",
        name,
        "events/s",
        True,
        count / elapsed[0],
        target_value=TARGET,
        note=f"{count:,} events in {elapsed[0]:.2f} s; {note}",
    )


def main() -> None:
    arguments = parser(__doc__ or "")
    arguments.add_argument("--events", type=int, default=20_000)
    arguments.add_argument("--standard-events", type=int, default=2_000)
    arguments.add_argument("--batch", type=int, default=1_000)
    options = arguments.parse_args()
    count = 2_000 if options.quick else options.events
    one_by_one = 200 if options.quick else options.standard_events
    with (
        tempfile.TemporaryDirectory() as scratch,
        clew_server(Path(scratch), workers=1) as server,
    ):
        token = server.headers["Authorization"].split()[1]
        meter = CpuMeter({"server": server.process.pid})
        time.sleep(0.5)
        singles, bulk = events(one_by_one, "single"), events(count, "bulk")
        results = [
            measure(
                "standard transport, 1 event/request, gzip",
                meter,
                one_by_one,
                lambda: standard(server.url, token, singles),
            ),
            measure(
                f"batched, {options.batch} events/request, gzip",
                meter,
                count,
                lambda: batched(server.url, token, bulk, options.batch),
            ),
        ]
    finish("OpenLineage ingest through clew server", results, options.json)


if __name__ == "__main__":
    main()
