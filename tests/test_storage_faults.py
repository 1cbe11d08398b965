"""Storage faults are one sentence naming the file and the fix, never a traceback.

A read-only store directory, a truncated or zeroed ``clew.db`` and a truncated capture file,
met by a read or a write, through the SDK and the CLI, embedded and behind a server. The
read-only cases run clew in a child process that may not override file permissions (root
drops ``CAP_DAC_OVERRIDE`` first), since a test run as root would otherwise write anyway.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from capture_support import editable_batch
from conftest import PostgresServer
from test_trace import _wine_thread
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client.default import reset
from clew.errors import IntegrityError, StorageFaultError
from clew.service import capture_verification
from clew.store.location import Store

runner = CliRunner(env={"COLUMNS": "200"})
CLEW = Path(sys.executable).with_name("clew")
# prctl(2) PR_CAPBSET_DROP; capabilities(7) CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH.
_PR_CAPBSET_DROP, _DAC_CAPABILITIES = 24, (1, 2)


def _one_sentence(stderr: str, exit_code: int, *contains: str) -> str:
    """The CLI's refusal: exit 1, one ``error:`` line holding ``contains``, no traceback."""
    assert exit_code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for text in contains:
        assert text in lines[0], lines[0]
    return lines[0]


# --- a truncated capture file --------------------------------------------------------------


def test_trace_of_a_truncated_capture_file_is_one_sentence(
    client: clew.Client, store: Store, git_repo: Path
) -> None:
    model, features = _wine_thread(client)
    _, ids = model.predict_with_ids(features.head(5))
    client.flush_captures()
    [batch] = capture_verification.all_batches(store)
    with editable_batch(SimpleNamespace(store=store)) as path:  # type: ignore[arg-type]
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(StorageFaultError) as raised:
        clew.trace(ids[1])
    message = str(raised.value)
    assert batch.path in message and "truncated" in message and "backup" in message
    assert message.endswith(".") and message.count(". ") == 0
    result = runner.invoke(app, ["trace", ids[1]])
    _one_sentence(result.stderr, result.exit_code, batch.path, "clew audit verify")


# --- a damaged clew.db -----------------------------------------------------------------------


def _closed_store_with_a_run(home: Path) -> str:
    client = clew.connect(str(home))
    with client.start_run(experiment="faults") as run:
        run.log_params({f"param_{i}": i for i in range(20)})
    reset()  # closes the store: the WAL is checkpointed into clew.db and removed
    return run.id


def _truncate(database: Path) -> None:
    with database.open("r+b") as handle:
        handle.truncate(database.stat().st_size // 4)


def _zero_header(database: Path) -> None:
    with database.open("r+b") as handle:
        handle.write(bytes(100))


@pytest.mark.sqlite_only
@pytest.mark.parametrize("damage", [_truncate, _zero_header], ids=["truncated", "zeroed-header"])
def test_a_damaged_database_file_is_one_sentence_for_reads_and_writes(
    home: Path, damage: Any
) -> None:
    run_id = _closed_store_with_a_run(home)
    damage(home / "clew.db")
    with pytest.raises(IntegrityError) as raised:
        clew.connect(str(home))
    message = str(raised.value)
    assert str(home / "clew.db") in message and "backup" in message
    assert message.count(". ") == 0
    for command in (
        ["runs", "show", run_id],
        ["audit", "log"],
        ["verify"],
        ["gc", "--yes"],
    ):
        result = runner.invoke(app, command)
        line = _one_sentence(result.stderr, result.exit_code, str(home / "clew.db"), "backup")
        assert "clew verify" not in line  # it could not open the file either


# --- a store the user may not write -------------------------------------------------------


def _without_permission_override() -> None:
    """In the child, before exec: root loses the capabilities that ignore file modes."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in _DAC_CAPABILITIES:
            if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_unprivileged(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CLEW_HOME": str(home), "CLEW_USER": "alice"}
    environment.pop("CLEW_URI", None)
    return subprocess.run(
        list(arguments),
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_without_permission_override,
    )


_SDK_WRITE = """
import sys, pandas as pd, clew
from clew.errors import StorageFaultError
try:
    with clew.connect(sys.argv[1]).start_run(experiment="faults") as run:
        run.log_output(pd.DataFrame({"x": range(7)}), name="seven")
except StorageFaultError as error:
    print(error)
    sys.exit(3)
"""


def _read_only(*paths: Path) -> None:
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)


@pytest.mark.sqlite_only
def test_a_read_only_store_directory_is_one_sentence_for_reads(home: Path) -> None:
    _closed_store_with_a_run(home)
    _read_only(home)
    try:
        result = _run_unprivileged(home, str(CLEW), "runs", "list")
        _one_sentence(result.stderr, result.returncode, str(home / "clew.db"), "write access")
        sdk = _run_unprivileged(home, sys.executable, "-c", _SDK_WRITE, str(home))
        assert sdk.returncode == 3, sdk.stderr
        assert str(home / "clew.db") in sdk.stdout and "Traceback" not in sdk.stderr
        served = _run_unprivileged(home, str(CLEW), "server", "--uri", str(home), "--port", "9")
        _one_sentence(served.stderr, served.returncode, str(home / "clew.db"), "write access")
    finally:
        home.chmod(0o755)


@pytest.mark.sqlite_only
def test_a_read_only_blob_directory_is_one_sentence_for_writes(home: Path) -> None:
    _closed_store_with_a_run(home)
    blobs = [home / "blobs", *(home / "blobs").rglob("*")]
    _read_only(*(path for path in blobs if path.is_dir()))
    try:
        sdk = _run_unprivileged(home, sys.executable, "-c", _SDK_WRITE, str(home))
        assert sdk.returncode == 3, sdk.stderr
        assert str(home / "blobs") in sdk.stdout and "Permission denied" in sdk.stdout
        assert "access" in sdk.stdout and "Traceback" not in sdk.stderr
    finally:
        for path in blobs:
            if path.is_dir():
                path.chmod(0o755)


@pytest.mark.sqlite_only
def test_a_store_directory_that_can_not_be_created_is_one_sentence(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    _read_only(parent)
    try:
        result = _run_unprivileged(parent / "store", str(CLEW), "runs", "list")
        _one_sentence(result.stderr, result.returncode, str(parent / "store"), "access")
    finally:
        parent.chmod(0o755)


@pytest.mark.sqlite_only
def test_the_sdk_write_above_succeeds_on_a_writable_store(home: Path) -> None:
    """The child script the read-only tests run really writes when nothing stops it."""
    sdk = _run_unprivileged(home, sys.executable, "-c", _SDK_WRITE, str(home))
    assert sdk.returncode == 0, sdk.stderr
    assert len(clew.connect(str(home)).search_runs()) == 1
    reset()


# --- clew db upgrade on a path holding no store (finding 9) ---------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize("form", ["directory", "sqlite-url"])
def test_db_upgrade_refuses_a_path_that_holds_no_store(tmp_path: Path, form: str) -> None:
    typo = tmp_path / "typo" / "path"
    uri = str(typo) if form == "directory" else f"sqlite:///{typo / 'clew.db'}"
    for command in (
        ["db", "upgrade", "--uri", uri],
        ["backup", str(tmp_path / "a.tar"), "--uri", uri],
    ):
        result = runner.invoke(app, command)
        _one_sentence(result.stderr, result.exit_code, str(typo), "no clew store", "--create")
    assert not typo.exists()  # nothing was created at the typo
    result = runner.invoke(app, ["db", "upgrade", "--uri", uri, "--create"])
    assert result.exit_code == 0, result.output
    assert (typo / "clew.db").is_file()
    result = runner.invoke(app, ["db", "upgrade", "--uri", uri])
    assert result.exit_code == 0, result.output  # a store now: no flag needed


@pytest.mark.postgres
def test_db_upgrade_refuses_a_postgres_database_without_a_store(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    name = f"typo_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url(name)
    artifacts = str(tmp_path / "blobs")
    result = runner.invoke(app, ["db", "upgrade", "--uri", url, "--artifacts", artifacts])
    _one_sentence(result.stderr, result.exit_code, name, "no clew store", "--create")
    result = runner.invoke(
        app, ["db", "upgrade", "--uri", url, "--artifacts", artifacts, "--create"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["db", "upgrade", "--uri", url, "--artifacts", artifacts])
    assert result.exit_code == 0, result.output
    reset()
