"""``clew gc``: unreferenced blobs go (after a grace period); referenced ones never do."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

import clew
from clew.cli import ops
from clew.cli.output import ClewGroup
from clew.domain import digests
from clew.errors import NotFoundError
from clew.service import audit, gc, idempotency, integrity
from clew.service.artifacts import ArtifactService
from clew.store import schema
from clew.store.location import open_store

TWO_HOURS_S = 2 * 60 * 60

ops_app = typer.Typer(cls=ClewGroup)
ops_app.command("gc")(ops.gc)
ops_app.add_typer(ops.db_app, name="db")


def _logged(client: clew.Client, tmp_path: Path) -> list[str]:
    """A file artifact, a directory artifact and an environment: every blob they need."""
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    folder = tmp_path / "report"
    (folder / "plots").mkdir(parents=True)
    (folder / "index.html").write_text("<p>report</p>")
    (folder / "plots" / "roc.txt").write_text("0.91")
    with client.start_run("e", "train") as run:
        run.log_input(data, name="train")
        report = run.log_output(folder, name="report")
    manifest = client.store.blobs.read_manifest(report.digest)
    return [report.digest, *manifest.values()]


def test_gc_deletes_only_unreferenced_blobs_and_audits_it(
    client: clew.Client, tmp_path: Path
) -> None:
    referenced = _logged(client, tmp_path)
    orphan = client.store.blobs.put_bytes(b"an upload whose metadata never committed")
    before = set(client.store.blobs.iter_digests())

    dry = gc.collect(client.store, "alice", grace_ms=0)
    assert [o.digest for o in dry.orphans] == [orphan.digest]
    assert dry.bytes == orphan.size and not dry.deleted
    assert set(client.store.blobs.iter_digests()) == before

    done = gc.collect(client.store, "alice", delete=True, grace_ms=0)
    assert done.deleted and [o.digest for o in done.orphans] == [orphan.digest]
    remaining = set(client.store.blobs.iter_digests())
    assert remaining == before - {orphan.digest}
    assert set(referenced) <= remaining
    assert integrity.verify_blobs(client.store) == []
    entry = audit.entries(client.store, limit=1)[0]
    assert entry.action == "blobs.gc" and entry.seq == done.audit_seq
    payload = {
        "deleted": 1,
        "bytes": orphan.size,
        "digests_digest": digests.digest_json([orphan.digest]),
        "grace_ms": 0,
    }
    assert entry.payload_digest == digests.digest_json(payload)
    assert audit.verify_chain(client.store)[1] is None

    again = gc.collect(client.store, "alice", delete=True, grace_ms=0)
    assert again.orphans == [] and again.audit_seq is None
    assert audit.entries(client.store, limit=1)[0].seq == entry.seq


def test_a_recorded_code_diff_and_environment_are_kept(client: clew.Client, git_repo: Path) -> None:
    (git_repo / "train.py").write_text("print('changed, not committed')\n")
    with client.start_run("e", "dirty"):
        pass
    report = gc.collect(client.store, "alice", delete=True, grace_ms=0)
    assert report.orphans == []
    assert report.referenced == len(list(client.store.blobs.iter_digests())) >= 2


def _age(client: clew.Client, digest: str, seconds: int) -> None:
    path = client.store.blobs.path_for(digest)
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_young_orphans_survive_until_the_grace_period_passes(client: clew.Client) -> None:
    """On every blob store: a just-written orphan is young under the default grace (an upload
    whose metadata has not committed yet) and goes once no grace protects it."""
    young = client.store.blobs.put_bytes(b"still being uploaded")
    spared = gc.collect(client.store, "alice", delete=True)
    assert [o.digest for o in spared.young] == [young.digest] and spared.orphans == []
    assert client.store.blobs.exists(young.digest)
    collected = gc.collect(client.store, "alice", delete=True, grace_ms=0)
    assert [o.digest for o in collected.orphans] == [young.digest]
    assert not client.store.blobs.exists(young.digest)


@pytest.mark.sqlite_only  # ages a file's mtime; an object store has no settable mtime
def test_young_orphans_survive_the_grace_period(client: clew.Client, tmp_path: Path) -> None:
    _logged(client, tmp_path)
    young = client.store.blobs.put_bytes(b"still being uploaded")
    old = client.store.blobs.put_bytes(b"left behind two hours ago")
    _age(client, old.digest, TWO_HOURS_S)
    report = gc.collect(client.store, "alice", delete=True)
    assert [o.digest for o in report.orphans] == [old.digest]
    assert [o.digest for o in report.young] == [young.digest]
    assert client.store.blobs.exists(young.digest) and not client.store.blobs.exists(old.digest)


@pytest.mark.sqlite_only  # only a local blob's age is renewed on re-store (see clew/service/gc.py)
def test_storing_old_content_again_renews_its_grace(client: clew.Client) -> None:
    """An upload that finds its bytes already stored must not lose them to a concurrent gc."""
    old = client.store.blobs.put_bytes(b"orphan about to be re-used")
    _age(client, old.digest, TWO_HOURS_S)
    client.store.blobs.put_bytes(b"orphan about to be re-used")
    report = gc.collect(client.store, "alice", delete=True)
    assert report.orphans == [] and client.store.blobs.exists(old.digest)


def test_cli_gc_is_a_dry_run_until_yes(client: clew.Client, tmp_path: Path) -> None:
    _logged(client, tmp_path)
    orphan = client.store.blobs.put_bytes(b"x" * 1000)
    runner = CliRunner()
    dry = runner.invoke(ops_app, ["gc", "--grace-minutes", "0"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 unreferenced blobs (1,000 bytes)" in dry.output
    assert "--yes" in dry.output and client.store.blobs.exists(orphan.digest)
    done = runner.invoke(ops_app, ["gc", "--grace-minutes", "0", "--yes", "--format", "json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["deleted"] is True and result["bytes"] == 1000
    assert [o["digest"] for o in result["orphans"]] == [orphan.digest]
    assert not open_store().blobs.exists(orphan.digest)


def _idempotency_rows(client: clew.Client, ages_ms: dict[str, int]) -> None:
    now = time.time_ns() // 1_000_000
    with client.store.db.write() as connection:
        for key, age in ages_ms.items():
            connection.execute(
                schema.idempotency_keys.insert().values(
                    user_name="alice",
                    key=key,
                    request_digest="d",
                    status_code=201,
                    response="{}",
                    created_ms=now - age,
                )
            )


def _idempotency_keys(client: clew.Client) -> set[str]:
    with client.store.db.read() as connection:
        return set(connection.execute(select(schema.idempotency_keys.c.key)).scalars())


def test_gc_deletes_expired_idempotency_keys_only(client: clew.Client) -> None:
    day = idempotency.KEY_TTL_MS
    _idempotency_rows(client, {"fresh-key-1": 60_000, "old-key-001": day + 60_000})
    runner = CliRunner()
    dry = runner.invoke(ops_app, ["gc", "--format", "json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["expired_idempotency_keys"] == 1
    assert _idempotency_keys(client) == {"fresh-key-1", "old-key-001"}
    done = runner.invoke(ops_app, ["gc", "--yes"])
    assert done.exit_code == 0, done.output
    assert "deleted 1 expired idempotency keys" in done.output
    assert _idempotency_keys(client) == {"fresh-key-1"}


def test_an_artifact_recorded_after_gc_took_its_orphan_bytes_is_refused(
    client: clew.Client,
) -> None:
    """An upload that found its bytes already present, then lost them to gc before recording
    them, is told so instead of recording a digest whose blob is gone."""
    found = client.store.blobs.put_bytes(b"bytes an earlier upload left behind")
    gc.collect(client.store, "alice", delete=True, grace_ms=0)
    with pytest.raises(NotFoundError, match="has not been uploaded"):
        ArtifactService(client.store).log(
            run_id=None,
            direction="output",
            type_="file",
            name="late",
            digest=found.digest,
            actor="alice",
            size=found.size,
            blobs={found.digest: (found.size, "file")},
        )
    with client.store.db.read() as connection:
        names = connection.execute(select(schema.artifacts.c.name)).scalars().all()
    assert "late" not in names


def test_gc_sweeps_old_temp_files_of_interrupted_writes_only(client: clew.Client) -> None:
    store = client.store
    for directory in store.scratch_directories():
        directory.mkdir(parents=True, exist_ok=True)
    old_upload = store.uploads / "upload-killed"
    old_staging = store.scratch_directories()[-1] / "incoming-killed"  # local blobs' staging
    fresh = store.uploads / "upload-in-progress"
    for path in (old_upload, old_staging, fresh):
        path.write_bytes(b"half a file")
    an_hour_and_more_ago = time.time() - TWO_HOURS_S
    for path in (old_upload, old_staging):
        os.utime(path, (an_hour_and_more_ago, an_hour_and_more_ago))

    dry = gc.collect(store, "alice")
    assert dry.stale_files == sorted([old_upload, old_staging])
    assert old_upload.exists() and old_staging.exists()

    gc.collect(store, "alice", delete=True)
    assert not old_upload.exists() and not old_staging.exists()
    assert fresh.exists()
