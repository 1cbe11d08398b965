"""One capture signing key per store: replicas share it through CLEW_SIGNING_KEY, and a
process holding another key is refused instead of signing batches nobody could verify."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.domain import signatures
from clew.errors import IntegrityError, InvalidInputError
from clew.service import audit, signing
from clew.store.location import Store


def _replica(client: clew.Client, home: Path) -> Store:
    """Another process's view of the same store: same database and blobs, its own home."""
    store = client.store
    return Store(store.uri, home, store.db, store.blobs)


def test_a_replica_with_its_own_key_is_refused(client: clew.Client, tmp_path: Path) -> None:
    first = signing.Signer(_replica(client, tmp_path / "replica-a"))
    with pytest.raises(IntegrityError, match="CLEW_SIGNING_KEY"):
        signing.Signer(_replica(client, tmp_path / "replica-b"))
    assert signing.store_public_key(_replica(client, tmp_path / "replica-b")) == first.public_pem
    bound = [e for e in audit.entries(client.store, None, 50) if e.action == "signing.bind"]
    assert [e.target for e in bound] == ["store:capture-key"]


def test_replicas_sharing_a_key_file_both_sign(
    client: clew.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "secrets" / "capture.pem"
    public = signing.create_key_file(shared)
    assert shared.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv(signing.KEY_ENV, str(shared))
    a = signing.Signer(_replica(client, tmp_path / "replica-a"))
    b = signing.Signer(_replica(client, tmp_path / "replica-b"))
    message = b"a batch root"
    assert a.public_pem == b.public_pem == public
    assert signatures.verify(public, message, b.sign(message))
    assert signing.store_public_key(client.store) == public


def test_a_missing_shared_key_file_is_refused_with_the_fix(
    client: clew.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "absent.pem"))
    with pytest.raises(InvalidInputError, match="clew keys create"):
        signing.Signer(client.store)


def test_keys_cli_creates_once_and_prints_the_public_key(
    client: clew.Client, tmp_path: Path
) -> None:
    runner = CliRunner()
    target = tmp_path / "k.pem"
    made = runner.invoke(app, ["keys", "create", str(target)])
    assert made.exit_code == 0 and "BEGIN PUBLIC KEY" in made.output
    again = runner.invoke(app, ["keys", "create", str(target)])
    assert again.exit_code != 0 and "already exists" in again.output
    shown = runner.invoke(app, ["keys", "public"])
    assert shown.exit_code == 0 and shown.output == clew.public_key()
