"""``clew backup`` / ``clew restore``: one archive in, a verified identical store out.

The source store follows the test backend (SQLite, or PostgreSQL + S3); restores go into a
fresh SQLite directory, so under ``postgres-s3`` these tests also prove that a PostgreSQL
backup restores into SQLite.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from capture_support import iris, register_iris
from typer.testing import CliRunner

import clew
from clew.cli import ops
from clew.cli.output import ClewGroup
from clew.errors import ConflictError, IntegrityError
from clew.service import audit
from clew.service import backup as backups
from clew.store.location import Store, open_store

ops_app = typer.Typer(cls=ClewGroup)
ops_app.command("backup")(ops.backup)
ops_app.command("restore")(ops.restore)
ops_app.command("gc")(ops.gc)


def _source() -> Store:
    """The test's store as the CLI would open it (CLEW_URI, else CLEW_HOME)."""
    return open_store()


def _governed_store(client: clew.Client, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Like the demo: a training run, a version approved by someone else and promoted, and
    captured predictions. Returns the prediction ids."""
    loaded = register_iris(client)
    monkeypatch.setenv("CLEW_USER", "bob")
    client.approve("iris/1", "validated on the holdout")
    client.promote("iris/1", "production")
    monkeypatch.setenv("CLEW_USER", "alice")
    features, _ = iris()
    _, ids = loaded.predict_with_ids(features[:30])
    client.flush_captures()
    return list(ids)


def test_governed_store_round_trips_and_verifies(
    client: clew.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prediction_ids = _governed_store(client, monkeypatch)
    source = _source()
    summary = backups.backup(source, tmp_path / "store.backup")
    assert summary.blobs >= 3 and summary.capture_files == 2
    assert summary.rows["model_versions"] == 1 and summary.rows["capture_batches"] == 1
    assert oct((tmp_path / "store.backup").stat().st_mode & 0o777) == oct(0o600)

    target = open_store(str(tmp_path / "restored"))
    restored = backups.restore(tmp_path / "store.backup", target, "carol")
    assert restored.rows == summary.rows
    assert restored.audit_head == summary.audit_head
    checked, chain_break = audit.verify_chain(target)
    assert chain_break is None and checked == summary.rows["audit_log"] + 1
    assert audit.entries(target, limit=1)[0].action == "store.restore"
    assert audit.verify_digests(target)[1] == []
    target.close()

    copy = clew.connect(str(tmp_path / "restored"))
    assert copy.version_status("iris/1")["status"] == "approved"
    model = copy.load_model("iris@production")
    features, _ = iris()
    expected = client.load_model("iris/1").predict(features[:5])
    assert np.array_equal(model.predict(features[:5]), expected)
    trace = copy.trace(prediction_ids[3])
    assert trace.step("prediction").verified
    assert trace.step("model_version").verified
    assert any(event.actor == "bob" for event in copy.model_history("iris"))


def test_restore_refuses_a_store_that_is_not_empty(client: clew.Client, tmp_path: Path) -> None:
    with client.start_run("e", "r") as run:
        run.log_metric("loss", 0.5)
    summary = backups.backup(_source(), tmp_path / "b.tar.gz")
    occupied = clew.connect(str(tmp_path / "occupied"))
    with occupied.start_run("other", "r"):
        pass
    with pytest.raises(ConflictError, match=r"is not empty .*restore only into a new, empty store"):
        backups.restore(summary.path, occupied.store, "carol")
    assert len(occupied.search_runs()) == 1


def _rewrite(archive: Path, out: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Copy a gzip tar member by member, letting ``change`` alter (name, bytes) pairs."""
    with tarfile.open(archive, "r:*") as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            name, data = change(member.name, data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            target.addfile(info, io.BytesIO(data))


def test_a_tampered_member_is_detected_and_nothing_is_restored(
    client: clew.Client, tmp_path: Path
) -> None:
    weights = tmp_path / "weights.json"
    weights.write_text("[1, 2, 3]")
    with client.start_run("e", "r") as run:
        run.log_output(weights, name="weights")
    summary = backups.backup(_source(), tmp_path / "b.tar.gz", compression="gzip")

    def flip_a_blob(name: str, data: bytes) -> tuple[str, bytes]:
        if name.startswith("blobs/"):
            return name, data[:-1] + bytes([data[-1] ^ 1])
        return name, data

    _rewrite(summary.path, tmp_path / "tampered.tar.gz", flip_a_blob)
    target = open_store(str(tmp_path / "restored"))
    with pytest.raises(IntegrityError, match="do not match their recorded digests"):
        backups.restore(tmp_path / "tampered.tar.gz", target, "carol")
    assert list(target.blobs.iter_digests()) == []
    assert audit.entries(target) == []


def test_a_forged_manifest_cannot_smuggle_a_path_outside_the_store(
    client: clew.Client, tmp_path: Path
) -> None:
    with client.start_run("e", "r"):
        pass
    summary = backups.backup(_source(), tmp_path / "b.tar.gz")

    def escape(name: str, data: bytes) -> tuple[str, bytes]:
        return ("captures/../../evil.txt", data) if name.startswith("metadata") else (name, data)

    _rewrite(summary.path, tmp_path / "evil.tar.gz", escape)
    target = open_store(str(tmp_path / "restored"))
    with pytest.raises(IntegrityError, match="is refused"):
        backups.restore(tmp_path / "evil.tar.gz", target, "carol")
    assert not (tmp_path / "evil.txt").exists()


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import clew

    marker = Path(sys.argv[1])
    output = marker.with_name("output.txt")
    client = clew.connect()
    for index in range(40):
        output.write_text(f"output of run {index}")
        with client.start_run("busy", f"run-{index}") as run:
            run.log_metrics({"loss": 1 / (index + 1), "step": float(index)})
            run.log_output(output, name=f"out-{index}")
        marker.write_text(str(index))
    client.close()
    """
)


def test_backup_while_another_process_writes_restores_consistently(
    client: clew.Client, tmp_path: Path
) -> None:
    marker = tmp_path / "progress"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(marker)],
        env={**os.environ, "CLEW_URI": os.environ.get("CLEW_URI") or str(client.store.home)},
        stderr=subprocess.PIPE,
    )
    try:
        while not marker.exists() and writer.poll() is None:
            time.sleep(0.05)
        summary = backups.backup(_source(), tmp_path / "live.tar.gz")
    finally:
        _, errors = writer.communicate(timeout=300)
    assert writer.returncode == 0, errors.decode()[-2000:]
    assert summary.rows["runs"] >= 1

    restored = backups.restore(summary.path, open_store(str(tmp_path / "restored")), "carol")
    assert restored.rows == summary.rows
    final = _source()
    checked, chain_break = audit.verify_chain(final)
    assert chain_break is None and checked >= restored.audit_entries


def test_cli_backup_and_restore_report_json(client: clew.Client, tmp_path: Path) -> None:
    with client.start_run("e", "r") as run:
        run.log_params({"alpha": 0.1})
    runner = CliRunner()
    made = runner.invoke(ops_app, ["backup", str(tmp_path / "b.tar.gz"), "--format", "json"])
    assert made.exit_code == 0, made.output
    backed_up = json.loads(made.stdout)
    assert backed_up["rows"]["params"] == 1 and backed_up["digest"].startswith("sha256:")
    target = str(tmp_path / "restored")
    done = runner.invoke(
        ops_app, ["restore", str(tmp_path / "b.tar.gz"), "--uri", target, "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["verified"] is True
    again = runner.invoke(ops_app, ["restore", str(tmp_path / "b.tar.gz"), "--uri", target])
    assert again.exit_code == 1
    assert "is not empty" in again.output
    exists = runner.invoke(ops_app, ["backup", str(tmp_path / "b.tar.gz")])
    assert exists.exit_code == 1 and "already exists" in exists.output


@pytest.mark.sqlite_only
def test_sqlite_backup_restores_into_postgresql(
    client: clew.Client, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prediction_ids = _governed_store(client, monkeypatch)
    summary = backups.backup(_source(), tmp_path / "b.tar.gz")
    # A PostgreSQL store keeps captures and keys under CLEW_HOME: give the target its own.
    monkeypatch.setenv("CLEW_HOME", str(tmp_path / "pg-home"))
    target = open_store(postgres_url, str(tmp_path / "pg-blobs"))
    restored = backups.restore(summary.path, target, "carol")
    assert restored.rows == summary.rows
    target.close()
    copy = clew.connect(postgres_url, artifacts=str(tmp_path / "pg-blobs"))
    assert copy.trace(prediction_ids[0]).step("prediction").verified
    with copy.start_run("after-restore", "r"):  # sequences moved past the restored ids
        pass
