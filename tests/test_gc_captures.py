"""``clew gc`` and capture files: a batch's files written without a ``capture_batches`` row
(a failed insert, a process killed in between) go once older than the grace period; a
recorded batch's files and a batch still being written never do.

Orphans are made the way a failed batch makes them: the files of a real batch are written
again under a new batch id with ``CaptureFiles.write_sealing`` and no row is inserted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from capture_support import iris, register_iris
from typer.testing import CliRunner

import clew
from clew.cli import ops
from clew.cli.output import ClewGroup
from clew.domain import digests, ids
from clew.domain.captures import BatchRecord
from clew.service import audit, capture_verification, gc
from clew.store.captures import LocalCaptureFiles, batch_relative_path, merkle_name

TWO_HOURS_S = 2 * 60 * 60

ops_app = typer.Typer(cls=ClewGroup)
ops_app.command("gc")(ops.gc)
ops_app.add_typer(ops.db_app, name="db")


@pytest.fixture
def s3_client(tmp_path: Path, s3_artifacts: str) -> Iterator[clew.Client]:
    """SQLite metadata with capture files in the SeaweedFS bucket (in every test pass)."""
    client = clew.connect(str(tmp_path / "meta"), artifacts=s3_artifacts)
    yield client
    client.close()


def _recorded_batch(client: clew.Client) -> BatchRecord:
    model = register_iris(client)
    features, _ = iris()
    model.predict(features)
    assert client.flush_captures()["captured"] == len(features)
    [batch] = capture_verification.all_batches(client.store)
    return batch


def _unrecorded_copy(client: clew.Client, batch: BatchRecord) -> list[str]:
    """Write a batch's files as ``write_sealed`` does, then stop before the row insert."""
    files = client.store.capture_files
    relative = batch_relative_path("iris", 1, "2026-11-24", ids.new_id())
    rows, levels = files.read_batch(batch.path), files.read_levels(batch.path, 150)
    files.write_sealing(relative, rows, lambda: (levels, {}))
    return sorted([relative, merkle_name(relative)])


def _all_files(client: clew.Client) -> set[str]:
    return {stored.relative for stored in client.store.capture_files.list_files()}


def _still_verifies(client: clew.Client) -> None:
    """What ``clew audit verify`` checks: the audit chain and every recorded batch."""
    assert audit.verify_chain(client.store)[1] is None
    checked, problems = capture_verification.verify_batches(client.store)
    assert checked == 1 and problems == []


def _age_local(files: LocalCaptureFiles, relatives: list[str]) -> None:
    old = time.time() - TWO_HOURS_S
    for relative in relatives:
        os.utime(files.path(relative), (old, old))


def test_old_orphans_go_fresh_orphans_and_recorded_batches_stay(client: clew.Client) -> None:
    """On the test pass's store: the local directory (SQLite pass) or the bucket (PostgreSQL
    + S3 pass), where an object's age cannot be set, so grace 0 makes the orphan old."""
    batch = _recorded_batch(client)
    recorded = {batch.path, merkle_name(batch.path)}
    orphan = _unrecorded_copy(client, batch)
    assert _all_files(client) == recorded | set(orphan)

    spared = gc.collect(client.store, "alice", delete=True)
    assert spared.orphan_captures == [] and spared.captures_audit_seq is None
    assert sorted(f.relative for f in spared.young_captures) == orphan
    assert _all_files(client) == recorded | set(orphan)

    dry = gc.collect(client.store, "alice", grace_ms=0)
    assert sorted(f.relative for f in dry.orphan_captures) == orphan
    assert dry.capture_bytes == sum(f.size for f in dry.orphan_captures) > 0
    assert _all_files(client) == recorded | set(orphan)

    done = gc.collect(client.store, "alice", delete=True, grace_ms=0)
    assert sorted(f.relative for f in done.orphan_captures) == orphan
    assert _all_files(client) == recorded
    entry = audit.entries(client.store, limit=1)[0]
    assert entry.action == "captures.gc" and entry.seq == done.captures_audit_seq
    payload = {
        "deleted": 2,
        "bytes": done.capture_bytes,
        "paths_digest": digests.digest_json(orphan),
        "grace_ms": 0,
    }
    assert entry.payload_digest == digests.digest_json(payload)
    _still_verifies(client)
    assert client.get_prediction(f"{batch.first_call}.0").verified


@pytest.mark.s3
def test_orphans_in_the_bucket_go_and_recorded_batches_stay(s3_client: clew.Client) -> None:
    batch = _recorded_batch(s3_client)
    orphan = _unrecorded_copy(s3_client, batch)
    spared = gc.collect(s3_client.store, "alice", delete=True)
    assert sorted(f.relative for f in spared.young_captures) == orphan
    assert all(
        f.modified_ms > time.time() * 1000 - TWO_HOURS_S * 1000 for f in spared.young_captures
    )
    done = gc.collect(s3_client.store, "alice", delete=True, grace_ms=0)
    assert sorted(f.relative for f in done.orphan_captures) == orphan
    assert _all_files(s3_client) == {batch.path, merkle_name(batch.path)}
    _still_verifies(s3_client)


@pytest.mark.sqlite_only  # ages files' mtimes in the local captures directory
def test_only_orphans_older_than_the_grace_period_go(client: clew.Client) -> None:
    files = client.store.capture_files
    assert isinstance(files, LocalCaptureFiles)
    batch = _recorded_batch(client)
    recorded = [batch.path, merkle_name(batch.path)]
    old = _unrecorded_copy(client, batch)
    fresh = _unrecorded_copy(client, batch)
    interrupted = f"{Path(batch.path).parent.as_posix()}/.incoming-killed"
    files.path(interrupted).write_bytes(b"half a parquet file")
    _age_local(files, [*recorded, *old, interrupted])

    report = gc.collect(client.store, "alice", delete=True)
    assert sorted(f.relative for f in report.orphan_captures) == sorted([*old, interrupted])
    assert sorted(f.relative for f in report.young_captures) == fresh
    assert _all_files(client) == {*recorded, *fresh}
    _still_verifies(client)


def test_cli_lists_orphan_capture_files_until_yes(client: clew.Client) -> None:
    batch = _recorded_batch(client)
    orphan = _unrecorded_copy(client, batch)
    runner = CliRunner()
    dry = runner.invoke(ops_app, ["gc", "--grace-minutes", "0"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 2 capture files no batch names" in dry.output
    assert "--yes" in dry.output and _all_files(client) >= set(orphan)
    done = runner.invoke(ops_app, ["gc", "--grace-minutes", "0", "--yes", "--format", "json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert sorted(o["path"] for o in result["orphan_capture_files"]) == orphan
    assert result["capture_bytes"] > 0 and result["captures_audit_seq"] is not None
    assert _all_files(client) == {batch.path, merkle_name(batch.path)}
