"""Rows edited, inserted or deleted behind clew's back (issue 13, finding 1).

Each test changes the metadata database directly, as someone with database access would, and
checks that ``clew audit verify`` names the row and what differs, and that status, approval,
promotion and trace refuse to vouch for the forged fact instead of believing it. They run on
SQLite and on PostgreSQL + S3, and through the server where the store sits behind one.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from server_fixtures import AsUser
from sqlalchemy import text
from tamper import execute_sql
from test_registry import train
from test_trace import _wine_thread

import clew
from clew.domain.audit import RecordProblem
from clew.errors import IntegrityError, InvalidInputError
from clew.service import audit, record_check, signed_heads
from clew.store.location import Store

# Every test here alters the store on purpose (the untouched one checks itself).
pytestmark = pytest.mark.tampers


@pytest.fixture
def approved(client: clew.Client, as_user: AsUser) -> clew.Client:
    """iris/1 registered by the current user and approved by bob; iris/2 still pending."""
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    _, second = train(client, max_iter=300)
    client.register_model(second, "iris")
    as_user("bob").approve("iris/1", "validated on the holdout")
    return client


def _problems(store: Store) -> list[RecordProblem]:
    _, problems = record_check.verify_records(store)
    return problems


def test_an_untouched_store_has_no_record_problems(approved: clew.Client, store: Store) -> None:
    checked, problems = record_check.verify_records(store)
    assert problems == [] and checked > 10


def test_an_edited_approver_is_named_and_refused(
    approved: clew.Client, store: Store, as_user: AsUser
) -> None:
    execute_sql(store, "UPDATE registry_events SET actor = 'mallory' WHERE kind = 'approved'")

    problems = _problems(store)
    assert len(problems) == 1
    assert problems[0].table == "registry_events"
    assert "actor is 'mallory' where audit entry" in problems[0].reason
    assert "recorded 'bob'" in problems[0].reason
    with pytest.raises(IntegrityError, match="can not vouch for the decisions on iris/1"):
        approved.version_status("iris/1")
    listed = approved.list_models()
    assert listed.loc[listed["name"] == "iris", "status"].tolist() == ["pending"]
    with pytest.raises(IntegrityError, match="mallory"):
        as_user("carol", role="admin").promote("iris/1", "production")


def test_an_inserted_approval_is_named_and_never_promoted(
    approved: clew.Client, store: Store, as_user: AsUser
) -> None:
    execute_sql(
        store,
        "INSERT INTO registry_events (id, model_id, version, kind, actor, time_ms, comment, "
        "evidence) SELECT '01ZZZZZZZZZZZZZZZZZZZZZZZZ', model_id, 2, 'approved', 'mallory', "
        "time_ms + 1, 'forged', evidence FROM registry_events WHERE kind = 'approved'",
    )

    problems = _problems(store)
    assert [(p.table, p.key) for p in problems] == [
        ("registry_events", "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    ]
    assert "not in the audit chain" in problems[0].reason
    with pytest.raises(IntegrityError, match="01ZZZZZZZZZZZZZZZZZZZZZZZZ"):
        as_user("carol", role="admin").promote("iris/2", "production")
    assert approved.alias_history("iris", "production").empty
    listed = approved.list_models()
    assert listed.loc[listed["name"] == "iris", "status"].tolist() == ["unverified"]


def test_a_deleted_rejection_is_named(approved: clew.Client, store: Store, as_user: AsUser) -> None:
    as_user("bob").reject("iris/2", "fails the fairness review")
    execute_sql(store, "DELETE FROM registry_events WHERE kind = 'rejected'")

    problems = _problems(store)
    assert len(problems) == 1 and problems[0].table == "registry_events"
    assert "was deleted" in problems[0].reason


@pytest.mark.parametrize(
    ("sql", "table", "words"),
    [
        ("UPDATE params SET value = '999' WHERE key = 'target'", "params", "value is '999'"),
        ("UPDATE runs SET user_name = 'mallory'", "runs", "user_name is 'mallory'"),
        (
            "UPDATE artifacts SET digest = 'sha256:' || repeat('0', 64) WHERE id = "
            "(SELECT min(id) FROM artifacts WHERE type = 'model')",
            "artifacts",
            "digest is 'sha256:000",
        ),
        ("UPDATE model_versions SET created_by = 'mallory'", "model_versions", "created_by"),
        ("DELETE FROM edges WHERE association = 'ContributedTo'", "edges", "was deleted"),
    ],
    ids=["param", "run-user", "artifact-digest", "version-registrant", "edge"],
)
def test_edited_lineage_rows_are_named(
    approved: clew.Client, store: Store, sql: str, table: str, words: str
) -> None:
    if "repeat(" in sql and store.db.dialect == "sqlite":
        sql = sql.replace("'sha256:' || repeat('0', 64)", "'sha256:" + "0" * 64 + "'")
    execute_sql(store, sql)

    problems = _problems(store)
    assert problems and all(problem.table == table for problem in problems)
    assert words in problems[0].reason


def test_editing_the_recorded_image_too_is_caught(approved: clew.Client, store: Store) -> None:
    """Rewriting the row and its image together breaks the entry that carried the image."""
    execute_sql(store, "UPDATE registry_events SET actor = 'mallory' WHERE kind = 'approved'")
    execute_sql(
        store,
        "UPDATE audit_records SET image = replace(image, '\"bob\"', '\"mallory\"') "
        "WHERE table_name = 'registry_events'",
    )

    problems = _problems(store)
    assert problems and "row images of audit entry" in problems[0].reason
    with pytest.raises(IntegrityError, match="row images of audit entry"):
        approved.version_status("iris/1")


def test_a_forged_policy_is_refused(approved: clew.Client, store: Store) -> None:
    approved.set_policy("approvals:\n  required: 2\n")
    execute_sql(store, "UPDATE policies SET document = 'approvals:\n  required: 0\n'")

    assert [p.table for p in _problems(store)] == ["policies"]
    with pytest.raises(IntegrityError, match="policy version 1"):
        approved.version_status("iris/1")


def test_trace_fails_a_thread_whose_records_were_rewritten(
    client: clew.Client, git_repo: Path, store: Store
) -> None:
    model, features = _wine_thread(client)
    _, ids = model.predict_with_ids(features.head(3))
    client.flush_captures()
    assert clew.trace(ids[0]).step("records").verified

    execute_sql(store, "UPDATE params SET value = '2.0' WHERE key = 'C'")

    step = clew.trace(ids[0]).step("records")
    assert not step.verified
    assert "params row" in step.reason and "value is '2.0'" in step.reason


# --- a whole-chain rewrite (finding 2) ----------------------------------------------------------


def _rewrite_chain_from(store: Store, seq: int, actor: str) -> None:
    """What someone with database access does: edit entry ``seq`` and recompute every hash
    after it and the head, so the chain re-hashes cleanly."""
    with store.db.engine.begin() as connection:
        rows = [
            dict(row)
            for row in connection.execute(
                text("SELECT * FROM audit_log WHERE seq >= :seq ORDER BY seq"), {"seq": seq}
            ).mappings()
        ]
        previous = connection.execute(
            text("SELECT hash FROM audit_log WHERE seq = :seq"), {"seq": seq - 1}
        ).scalar()
        for row in rows:
            if row["seq"] == seq:
                row["actor"] = actor
            row["prev_hash"] = previous or audit.GENESIS
            row["hash"] = audit.entry_hash(row)
            previous = row["hash"]
            connection.execute(
                text(
                    "UPDATE audit_log SET actor = :actor, prev_hash = :prev_hash, hash = :hash "
                    "WHERE seq = :seq"
                ),
                row,
            )
        connection.execute(
            text("UPDATE store_info SET value = :head WHERE key = 'audit_head'"),
            {"head": f"{rows[-1]['seq']}:{previous}"},
        )


def _approval_seq(store: Store) -> int:
    with store.db.engine.begin() as connection:
        return int(
            connection.execute(
                text("SELECT seq FROM audit_log WHERE action = 'model.approved'")
            ).scalar_one()
        )


@pytest.mark.embedded_only
def test_a_rewritten_chain_re_hashes_but_fails_its_signed_checkpoints(
    approved: clew.Client, store: Store, tmp_path: Path
) -> None:
    exported = tmp_path / "checkpoints.jsonl"
    assert signed_heads.export(store, str(exported)) >= 1
    _rewrite_chain_from(store, _approval_seq(store), "mallory")

    assert audit.verify_chain(store)[1] is None  # the rewrite re-hashes cleanly
    _, stored = signed_heads.verify_stored(store)
    assert stored and "the chain was rewritten" in stored[0].reason

    execute_sql(store, "DELETE FROM audit_checkpoints")  # and hide the store's own checkpoints
    assert signed_heads.verify_stored(store) == (0, [])
    _, problems = signed_heads.verify_against(store, str(exported))
    assert problems and "the chain was rewritten up to that entry" in problems[0].reason


@pytest.mark.embedded_only
def test_an_approval_signs_a_checkpoint_of_its_entry(approved: clew.Client, store: Store) -> None:
    """The checkpoint covers the approval's entry (a first signature also binds the store's
    key, which appends its own entry after the approval's)."""
    signed = [checkpoint.seq for checkpoint in signed_heads.checkpoints(store)]
    assert signed and max(signed) >= _approval_seq(store)
    assert signed_heads.verify_stored(store) == (len(signed), [])


@pytest.mark.embedded_only
def test_a_forged_checkpoint_signature_is_refused(
    approved: clew.Client, store: Store, tmp_path: Path
) -> None:
    exported = tmp_path / "checkpoints.jsonl"
    signed_heads.export(store, str(exported))
    lines = exported.read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["hash"] = "sha256:" + "1" * 64
    exported.write_text("\n".join([*lines[:-1], json.dumps(forged)]) + "\n")

    _, problems = signed_heads.verify_against(store, str(exported))
    assert [problem.reason for problem in problems] == [
        "its signature does not verify (the checkpoint was altered)"
    ]


@pytest.mark.s3
def test_checkpoints_export_to_the_object_store(
    approved: clew.Client, store: Store, s3_artifacts: str
) -> None:
    destination = s3_artifacts.rstrip("/") + "/audit/checkpoints.jsonl"
    assert signed_heads.export(store, destination) >= 1
    count, problems = signed_heads.verify_against(store, destination)
    assert count >= 1 and problems == []


@pytest.mark.s3
def test_checkpoints_export_under_object_lock_compliance(
    approved: clew.Client, store: Store, s3_server: dict[str, str], s3_artifacts: str
) -> None:
    """With --retain-days the exported object can not be deleted, even by the bucket's owner."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1")
    bucket = f"locked-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    destination = f"s3://{bucket}/checkpoints.jsonl"

    assert signed_heads.export(store, destination, retain_days=1) >= 1

    head = s3.head_object(Bucket=bucket, Key="checkpoints.jsonl")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(s3.exceptions.ClientError):
        s3.delete_object(Bucket=bucket, Key="checkpoints.jsonl", VersionId=head["VersionId"])
    assert signed_heads.verify_against(store, destination)[1] == []


@pytest.mark.s3
def test_retention_on_a_bucket_without_object_lock_is_one_sentence(
    approved: clew.Client, store: Store, s3_artifacts: str
) -> None:
    destination = s3_artifacts.rstrip("/") + "/audit/checkpoints.jsonl"
    with pytest.raises(InvalidInputError, match="could not be written under Object Lock"):
        signed_heads.export(store, destination, retain_days=1)
