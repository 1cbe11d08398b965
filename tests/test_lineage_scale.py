"""A lineage walk costs one statement per level and a fixed few to hydrate, whatever its size.

Counted on the real SQLite connection (``sqlite3``'s trace callback), not timed: a walk that
re-issues its queries per chunk of ids grows with the graph, which is what made 20-hop walks
as slow as ML Metadata's.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

import clew
from clew.domain import digests
from clew.store.location import Store

pytestmark = pytest.mark.sqlite_only


def fan_in(client: clew.Client, inputs: int, name: str) -> str:
    """One run reading ``inputs`` datasets and producing one model; the model's id."""
    artifacts = [
        {
            "key": f"in-{i}",
            "type": "dataset",
            "name": f"{name}-in-{i}",
            "digest": digests.digest_bytes(f"{name}-{i}".encode()),
        }
        for i in range(inputs)
    ]
    artifacts.append(
        {
            "key": "model",
            "type": "model",
            "name": f"{name}-model",
            "digest": digests.digest_bytes(name.encode()),
        }
    )
    run = {"key": "fit", "name": name, "inputs": [a["key"] for a in artifacts[:-1]]}
    result = client.lineage.ingest(artifacts, [{**run, "outputs": ["model"]}])
    return result.artifacts["model"]


def selects_during(store: Store, action: Any) -> int:
    """How many SELECT statements SQLite ran for ``action`` (fresh pooled connections traced)."""
    seen: list[str] = []

    def trace(connection: Any, _record: Any) -> None:
        connection.set_trace_callback(seen.append)

    store.db.engine.dispose()
    event.listen(store.db.engine, "connect", trace)
    try:
        action()
    finally:
        event.remove(store.db.engine, "connect", trace)
        store.db.engine.dispose()
    return sum(1 for statement in seen if statement.lstrip().upper().startswith("SELECT"))


def test_a_walk_runs_as_many_statements_for_1200_nodes_as_for_100(
    client: clew.Client, store: Store
) -> None:
    small = fan_in(client, 100, "small")
    large = fan_in(client, 1_200, "large")
    counts = {}
    for label, model in (("small", small), ("large", large)):
        found: list[int] = []

        def walk(model: str = model, found: list[int] = found) -> None:
            found.append(len(client.lineage.upstream(f"artifact:{model}", max_depth=5).nodes))

        counts[label] = selects_during(store, walk)
        assert found[0] in (102, 1_202)
    assert counts["large"] == counts["small"]
