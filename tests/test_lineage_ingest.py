"""Bulk lineage ingest: many runs and artifacts in one call, one transaction, one audit entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tamper import execute_sql

import clew
from clew.domain import digests
from clew.errors import InvalidInputError, NameConflictError
from clew.service.lineage_ingest import MAX_ITEMS
from clew.store import schema
from clew.store.location import Store


def digest_of(text: str) -> str:
    return digests.digest_bytes(text.encode())


def artifact(key: str, type_: str = "dataset", **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": type_, "name": key, "digest": digest_of(key), **extra}


def pipeline() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """raw -> prep -> features -> train -> model, in one batch."""
    artifacts = [
        artifact("raw", "data_source", uri="s3://lake/raw/"),
        artifact("features"),
        artifact("model", "model", properties={"framework": "sklearn"}),
    ]
    runs = [
        {
            "key": "prep",
            "experiment": "bulk",
            "name": "prep",
            "kind": "processing",
            "inputs": ["raw"],
            "outputs": ["features"],
        },
        {
            "key": "train",
            "experiment": "bulk",
            "name": "train",
            "params": {"alpha": 0.5, "solver": "lbfgs"},
            "inputs": ["features"],
            "outputs": ["model"],
            "start_ms": 1_700_000_000_000,
            "end_ms": 1_700_000_060_000,
        },
    ]
    return artifacts, runs


def audit_entries(store: Store) -> int:
    with store.db.read() as connection:
        return int(connection.execute(select(func.count()).select_from(schema.audit_log)).scalar())


def test_ingest_builds_the_graph_the_walks_follow(client: clew.Client) -> None:
    artifacts, runs = pipeline()
    result = client.lineage.ingest(artifacts, runs)

    assert set(result.artifacts) == {"raw", "features", "model"}
    assert set(result.runs) == {"prep", "train"}
    assert result.edges == 6  # 2 inputs, 2 outputs, 2 runs -> experiment
    up = client.lineage.upstream(f"artifact:{result.artifacts['model']}", max_depth=10)
    found = {(e.source_id, e.association, e.destination_id, e.depth) for e in up.edges}
    assert found == {
        (result.runs["train"], "Produced", result.artifacts["model"], 1),
        (result.artifacts["features"], "ContributedTo", result.runs["train"], 2),
        (result.runs["prep"], "Produced", result.artifacts["features"], 3),
        (result.artifacts["raw"], "ContributedTo", result.runs["prep"], 4),
    }
    train = client.get_run(result.runs["train"])
    assert (train.experiment, train.status, train.kind) == ("bulk", "FINISHED", "training")
    assert train.params == {"alpha": "0.5", "solver": "lbfgs"}
    assert (train.start_ms, train.end_ms) == (1_700_000_000_000, 1_700_000_060_000)
    assert up.nodes[result.artifacts["raw"]].facts["source_uri"] == "s3://lake/raw/"
    assert up.nodes[result.artifacts["model"]].properties == {"framework": "sklearn"}
    down = client.lineage.downstream("data_source:raw", max_depth=10)
    assert result.artifacts["model"] in down.nodes


def test_ingest_is_one_audit_entry_carrying_every_row(client: clew.Client, store: Store) -> None:
    """The ``client`` fixture checks every row against its image after the test."""
    before = audit_entries(store)
    artifacts, runs = pipeline()
    client.lineage.ingest(artifacts, runs)
    assert audit_entries(store) == before + 1
    with store.db.read() as connection:
        last = connection.execute(
            select(schema.audit_log.c.action).order_by(schema.audit_log.c.seq.desc())
        ).first()
        images = connection.execute(
            select(func.count())
            .select_from(schema.audit_records)
            .where(
                schema.audit_records.c.seq
                == select(func.max(schema.audit_log.c.seq)).scalar_subquery()
            )
        ).scalar()
    assert last is not None and last.action == "lineage.ingest"
    # 3 artifacts, 2 runs, 2 params, 6 edges and the new experiment context.
    assert images == 3 + 2 + 2 + 6 + 1


def test_ingesting_the_same_artifacts_again_finds_the_same_nodes(client: clew.Client) -> None:
    artifacts, runs = pipeline()
    first = client.lineage.ingest(artifacts, runs)
    second = client.lineage.ingest(artifacts, [{**runs[1], "key": "again"}])
    assert second.artifacts == first.artifacts
    assert second.runs["again"] != first.runs["train"]
    assert second.edges == 3


def test_an_input_is_the_node_a_run_produced_with_its_bytes(
    client: clew.Client, tmp_path: Path
) -> None:
    """One node per content, as for ``log_input``: in the store and within the batch."""
    data = tmp_path / "clean.parquet"
    data.write_bytes(b"cleaned rows")
    with clew.start_run(experiment="bulk", name="clean") as clean:
        written = clean.log_output(data)
    same_bytes = digests.digest_bytes(b"cleaned rows")
    result = client.lineage.ingest(
        [
            {"key": "read", "type": "dataset", "name": "clean", "digest": same_bytes},
            artifact("made", "feature_set"),
            {"key": "reread", "type": "dataset", "name": "other", "digest": digest_of("made")},
        ],
        [
            {"key": "fit", "name": "fit", "inputs": ["read"], "outputs": ["made"]},
            {"key": "score", "name": "score", "inputs": ["reread"]},
        ],
    )
    assert result.artifacts["read"] == written.id
    assert result.artifacts["reread"] == result.artifacts["made"]
    up = client.lineage.upstream(f"run:{result.runs['score']}", max_depth=10)
    assert clean.id in up.nodes


def test_empty_content_never_joins(client: clew.Client) -> None:
    empty = digests.digest_bytes(b"")
    result = client.lineage.ingest(
        [
            {"key": "out", "type": "file", "name": "out", "digest": empty, "size": 0},
            {"key": "in", "type": "dataset", "name": "in", "digest": empty, "size": 0},
        ],
        [
            {"key": "a", "name": "a", "outputs": ["out"]},
            {"key": "b", "name": "b", "inputs": ["in"]},
        ],
    )
    assert result.artifacts["in"] != result.artifacts["out"]


@pytest.mark.parametrize(
    ("artifacts", "runs", "message"),
    [
        ([artifact("a")], [{"key": "r", "name": "r", "inputs": ["b"]}], "key 'b', which is not"),
        ([artifact("a"), artifact("a")], [], "key 'a' is used twice"),
        ([{**artifact("a"), "digest": "md5:1"}], [], "is not a sha256 digest"),
        ([{**artifact("a"), "colour": "red"}], [], "has unknown colour"),
        ([], [{"key": "r"}], "run #2 lacks name"),
        ([], [{"key": "r", "name": "r", "status": "DONE"}], "status 'DONE' is unknown"),
        ([{**artifact("a"), "uri": "file:///etc/passwd"}], [], "file:///etc/passwd"),
    ],
)
def test_a_bad_item_is_refused_and_nothing_is_written(
    client: clew.Client,
    store: Store,
    artifacts: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    message: str,
) -> None:
    good_artifacts, good_runs = pipeline()
    before = audit_entries(store)
    with pytest.raises(InvalidInputError, match=message):
        client.lineage.ingest([*good_artifacts, *artifacts], [*good_runs, *runs])
    assert audit_entries(store) == before
    with store.db.read() as connection:
        assert connection.execute(select(func.count()).select_from(schema.runs)).scalar() == 0


@pytest.mark.tampers
def test_an_ingested_graph_verifies_and_a_forged_row_in_it_is_named(
    client: clew.Client, store: Store
) -> None:
    """Bulk rows carry the same tamper evidence as the per-call path: ``verify_audit`` passes
    on the batch as written, then names an edited source, a deleted edge and a forged one."""
    artifacts, runs = pipeline()
    result = client.lineage.ingest(artifacts, runs)
    clean = client.verify_audit()
    assert clean.ok and clean.rows_checked >= 14

    raw, prep = result.artifacts["raw"], result.runs["prep"]
    execute_sql(store, "UPDATE artifacts SET uri = 's3://elsewhere/' WHERE id = :id", id=raw)
    execute_sql(
        store,
        "DELETE FROM edges WHERE source_id = :run AND association = 'Produced'",
        run=prep,
    )
    execute_sql(
        store,
        "INSERT INTO edges (source_id, source_kind, destination_id, destination_kind, "
        "association, created_ms) VALUES (:raw, 'artifact', :model, 'artifact', "
        "'DerivedFrom', 0)",
        raw=raw,
        model=result.artifacts["model"],
    )

    problems = {problem.key: problem for problem in client.verify_audit().row_problems}
    assert len(problems) == 3
    assert problems[raw].table == "artifacts"
    assert problems[raw].reason.startswith("uri is 's3://elsewhere/' where audit entry")
    produced = f"{prep}/{result.artifacts['features']}/Produced"
    assert "was deleted" in problems[produced].reason
    forged = f"{raw}/{result.artifacts['model']}/DerivedFrom"
    assert "is not in the audit chain" in problems[forged].reason


def test_a_batch_over_the_item_limit_is_one_sentence_and_writes_nothing(
    client: clew.Client, store: Store
) -> None:
    """Embedded, the service counts the items; through the server, the route's body model
    refuses the list before the service runs. Either way: one sentence, nothing written."""
    before = audit_entries(store)
    runs = [{"key": "r", "name": "r"}] * (MAX_ITEMS + 1)
    with pytest.raises(InvalidInputError, match=f"{MAX_ITEMS:,}|at most {MAX_ITEMS}"):
        client.lineage.ingest([], runs)
    assert audit_entries(store) == before


def test_runs_join_existing_experiments_and_a_look_alike_name_is_refused(
    client: clew.Client, store: Store
) -> None:
    """A batch finds experiments by name in one query; a new one is created once, and one
    that differs from an existing name only in case is refused, with nothing written."""
    with clew.start_run(experiment="churn", name="by-hand") as by_hand:
        pass
    result = client.lineage.ingest(
        [],
        [
            {"key": "a", "name": "a", "experiment": "churn"},
            {"key": "b", "name": "b", "experiment": "fresh"},
            {"key": "c", "name": "c", "experiment": "fresh"},
        ],
    )
    experiments = {key: client.get_run(run_id).experiment for key, run_id in result.runs.items()}
    assert experiments == {"a": "churn", "b": "fresh", "c": "fresh"}
    churn = client.lineage.upstream(f"run:{by_hand.id}", max_depth=1).nodes
    joined = client.lineage.upstream(f"run:{result.runs['a']}", max_depth=1).nodes
    assert {n.id for n in churn.values() if n.kind == "context"} == {
        n.id for n in joined.values() if n.kind == "context"
    }
    with pytest.raises(NameConflictError, match="looks like the existing experiment 'churn'"):
        client.lineage.ingest([], [{"key": "d", "name": "d", "experiment": "Churn"}])
    with store.db.read() as connection:
        assert connection.execute(select(func.count()).select_from(schema.runs)).scalar() == 4
