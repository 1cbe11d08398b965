"""Rotating the capture signing key: the new key signs, the old one is refused, and every batch
still verifies with the public key it names, from the store's audited key history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from capture_support import iris, register_iris, register_iris_remotely
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from server_fixtures import RunningServer, run_uvicorn, server, server_store  # noqa: F401
from sqlalchemy import create_engine, text
from tamper import execute_sql
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client.loaded_model import LoadedModel
from clew.domain import capture_proofs, digests, signatures
from clew.domain.audit import AuditEntry
from clew.domain.keys import RotationRequest, SigningKey
from clew.errors import ClewError, IntegrityError, InvalidInputError
from clew.server.app import create_app
from clew.service import audit, capture_verification, signing
from clew.store.location import Store, open_store
from clew.store.metadata import MIGRATIONS_DIR


@pytest.fixture
def old_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The key every process signs with before the rotation, shared through CLEW_SIGNING_KEY."""
    path = tmp_path / "secrets" / "old.pem"
    signing.create_key_file(path)
    monkeypatch.setenv(signing.KEY_ENV, str(path))
    return path


@pytest.fixture
def new_key(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "new.pem"
    signing.create_key_file(path)
    return path


def _key_id(path: Path) -> str:
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return signatures.key_id(signatures.public_pem(private.public_key()))  # type: ignore[arg-type]


def _predict(
    model: LoadedModel, client: clew.Client, timeout: float = 60
) -> tuple[list[str], dict[str, object]]:
    _, prediction_ids = model.predict_with_ids(iris()[0][:10])
    return list(prediction_ids), client.flush_captures(timeout)


def _rotations(store: Store) -> list[AuditEntry]:
    return [e for e in audit.entries(store, "store:capture-key") if e.action == "signing.rotate"]


def test_batches_from_before_and_after_a_rotation_all_verify(
    client: clew.Client, old_key: Path, new_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = register_iris(client)
    before, stats = _predict(model, client)
    assert stats["captured"] == 10

    rotated = client.rotate_signing_key(new_key)
    assert rotated["key_id"] == _key_id(new_key)
    assert rotated["previous_key_id"] == _key_id(old_key)
    assert rotated["actor"] == client.actor

    # This process still holds the old key: its next batch is refused, naming both keys.
    _, stats = _predict(model, client)
    assert stats["failed"] == 10 and stats["captured"] == 10
    error = stats["last_error"]
    assert _key_id(old_key)[:19] in error and _key_id(new_key)[:19] in error
    assert "rotated out" in error and signing.KEY_ENV in error

    # Given the new key, the same process signs again without a restart.
    monkeypatch.setenv(signing.KEY_ENV, str(new_key))
    after, stats = _predict(model, client)
    assert stats["captured"] == 20 and stats["failed"] == 10

    old, new = client.get_prediction(before[3]), client.get_prediction(after[3])
    assert (old.key_id, new.key_id) == (_key_id(old_key), _key_id(new_key))
    assert old.verified and new.verified, (old.verification, new.verification)
    for prediction_id in (before[3], after[3]):
        assert client.trace(prediction_id).steps[0].verified

    history = client.signing_keys()
    assert [key["key_id"] for key in history] == [_key_id(old_key), _key_id(new_key)]
    assert history[1]["previous_key_id"] == history[0]["key_id"]
    assert client.public_key() == history[1]["public_key"]
    [entry] = _rotations(client.store)
    assert entry.actor == client.actor
    assert entry.payload_digest == digests.digest_json(
        {k: v for k, v in history[1].items() if k != "created_at"}
    )
    checked = CliRunner().invoke(app, ["audit", "verify"])
    assert checked.exit_code == 0, checked.output
    assert "2 capture batches match" in " ".join(checked.output.split())


def test_a_key_file_replaced_with_the_rotated_key_loses_no_batch(
    client: clew.Client, old_key: Path, new_key: Path
) -> None:
    """A rotated secret mounted at the same path: the running writer follows it."""
    model = register_iris(client)
    before, _ = _predict(model, client)
    old_id = _key_id(old_key)
    client.rotate_signing_key(new_key)
    old_key.write_bytes(new_key.read_bytes())
    after, stats = _predict(model, client)
    assert stats["captured"] == 20 and stats["failed"] == 0
    keys = [client.get_prediction(ids[0]).key_id for ids in (before, after)]
    assert keys == [old_id, _key_id(new_key)]
    assert capture_verification.verify_batches(client.store) == (2, [])


def test_a_process_started_with_the_old_key_after_a_rotation_is_refused(
    client: clew.Client, old_key: Path, new_key: Path, tmp_path: Path
) -> None:
    running = signing.Signer(client.store)
    client.rotate_signing_key(new_key)
    replica = Store(client.store.uri, tmp_path / "replica", client.store.db, client.store.blobs)
    with pytest.raises(IntegrityError) as refused:
        signing.Signer(replica)
    message = str(refused.value)
    assert _key_id(old_key)[:19] in message and _key_id(new_key)[:19] in message
    assert "rotated out" in message and f"set {signing.KEY_ENV}" in message
    # One that started before the rotation learns of it when it next records a batch.
    with client.store.db.read() as connection, pytest.raises(IntegrityError, match="rotated"):
        running.require_current(connection)


def test_a_batch_naming_a_key_outside_the_history_fails_verification(
    client: clew.Client, old_key: Path, new_key: Path
) -> None:
    model = register_iris(client)
    ids, _ = _predict(model, client)
    found = client.get_prediction(ids[0])
    rows, header = found.leaf_table, dict(found.header)
    assert rows is not None
    stranger = signatures.public_pem(signing._load(new_key).public_key())
    verdict = capture_proofs.verify_row(
        rows, header, found.signature, found.proof, {signatures.key_id(stranger): stranger}
    )
    assert not verdict.verified
    assert f"names key {_key_id(old_key)}" in verdict.reason
    assert "clew keys public --all" in verdict.reason
    # The whole history verifies it; one public key alone still does too (the auditor's path).
    keys = signing.public_keys(client.store)
    assert capture_proofs.verify_row(rows, header, found.signature, found.proof, keys).verified
    pem = keys[_key_id(old_key)]
    assert capture_proofs.verify_row(rows, header, found.signature, found.proof, pem).verified


def _pem_id(pem: str) -> str:
    return signatures.key_id(pem.encode())


@pytest.mark.tampers
def test_a_key_history_row_altered_outside_clew_verifies_nothing(
    client: clew.Client, old_key: Path, new_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = register_iris(client)
    before, _ = _predict(model, client)
    client.rotate_signing_key(new_key)
    monkeypatch.setenv(signing.KEY_ENV, str(new_key))
    after, stats = _predict(model, client)  # the writer loads the new key for this batch
    assert stats["captured"] == 20 and capture_verification.verify_batches(client.store)[1] == []

    execute_sql(
        client.store,
        "UPDATE signing_keys SET actor = 'mallory' WHERE key_id = :key",
        key=_key_id(new_key),
    )
    assert signing.public_keys(client.store).keys() == {_key_id(old_key)}
    assert [key["key_id"] for key in client.signing_keys()] == [_key_id(old_key)]
    assert client.get_prediction(before[0]).verified
    found = client.get_prediction(after[0])
    assert not found.verified and "audited public keys" in found.verification.reason
    checked, problems = capture_verification.verify_batches(client.store)
    assert checked == 2 and len(problems) == 1
    assert _key_id(new_key) in problems[0].reason


def _ec_key_file(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_bad_rotations_are_refused_in_one_sentence_and_change_nothing(
    client: clew.Client, old_key: Path, new_key: Path, tmp_path: Path
) -> None:
    signing.Signer(client.store)  # binds the old key
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    cases = [
        (_ec_key_file(tmp_path / "ec.pem"), "is not an Ed25519 private key"),
        (garbage, "is not an unencrypted PEM Ed25519 private key"),
        (tmp_path / "absent.pem", "does not exist"),
        (old_key, "is already the store's capture key"),
    ]
    runner = CliRunner()
    for path, reason in cases:
        with pytest.raises(InvalidInputError, match=reason):
            client.rotate_signing_key(path)
        result = runner.invoke(app, ["keys", "rotate", str(path)])
        assert result.exit_code == 1
        assert result.output.startswith("error: ") and reason in " ".join(result.output.split())
    client.rotate_signing_key(new_key)
    # The old key may be the leaked one: it can never come back.
    with pytest.raises(InvalidInputError, match="was retired from this store"):
        client.rotate_signing_key(old_key)
    assert [key["key_id"] for key in client.signing_keys()] == [
        _key_id(old_key),
        _key_id(new_key),
    ]
    assert len(_rotations(client.store)) == 1


def test_a_rotation_not_signed_by_the_new_key_or_from_a_stale_key_is_refused(
    client: clew.Client, old_key: Path, new_key: Path, tmp_path: Path
) -> None:
    signing.Signer(client.store)
    current = _key_id(old_key)
    request = signing.rotation_request(new_key, current)
    other = signing.rotation_request(_made(tmp_path / "other.pem"), current)
    forged = RotationRequest(request.public_key, current, other.proof)
    with pytest.raises(InvalidInputError, match="is not signed by that key"):
        signing.rotate(client.store, forged, "mallory")
    stale = signing.rotation_request(new_key, None)
    with pytest.raises(ClewError, match="run `clew keys rotate` again"):
        signing.rotate(client.store, stale, "alice")
    assert [key.key_id for key in signing.key_history(client.store)] == [current]
    assert _rotations(client.store) == []


def _made(path: Path) -> Path:
    signing.create_key_file(path)
    return path


def test_keys_public_all_lists_the_history(
    client: clew.Client, old_key: Path, new_key: Path
) -> None:
    signing.Signer(client.store)
    client.rotate_signing_key(new_key)
    shown = CliRunner().invoke(app, ["keys", "public", "--all"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    headers = [line for line in lines if line.startswith("# ")]
    assert headers[0].startswith(f"# {_key_id(old_key)} (retired)")
    assert headers[1].startswith(f"# {_key_id(new_key)} (current)")
    assert f"replacing {_key_id(old_key)}" in headers[1]
    assert shown.output.count("BEGIN PUBLIC KEY") == 2


# --- through a server ---------------------------------------------------------------------


@pytest.fixture
def admin(server: RunningServer, old_key: Path) -> Iterator[clew.Client]:  # noqa: F811
    client = clew.connect(server.url, token=server.user("root", "admin"))
    yield client
    client.close()


def test_rotating_through_a_server(
    server: RunningServer,  # noqa: F811
    admin: clew.Client,
    old_key: Path,
    new_key: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = register_iris_remotely(admin)
    before, stats = _predict(model, admin)
    assert stats["captured"] == 10

    contributor = clew.Client(server.url, token=server.user("bob"))
    with pytest.raises(
        ClewError, match="bob' is a contributor and this needs the admin"
    ) as refused:
        contributor.rotate_signing_key(new_key)
    contributor.close()
    assert len(str(refused.value).rstrip(".").split(". ")) == 1
    assert [key["key_id"] for key in admin.signing_keys()] == [_key_id(old_key)]

    rotated = admin.rotate_signing_key(new_key)
    assert rotated["actor"] == "root" and rotated["previous_key_id"] == _key_id(old_key)
    [entry] = _rotations(server.store)
    assert entry.actor == "root"

    # A replica started now, still given the old key, refuses its first batch (the server log
    # says why); the client keeps the batch in its spool for when the replica is fixed.
    replica = Store(server.store.uri, tmp_path / "replica", server.store.db, server.store.blobs)
    for url in run_uvicorn(create_app(replica)):
        on_replica = clew.Client(url, token=server.tokens["root"])
        _, stats = _predict(on_replica.load_model("iris/1"), on_replica, timeout=1)
        assert stats["pending"] == 10 and stats["failed"] == 0
        on_replica.close()
    assert "rotated out" in caplog.text

    # The running server, still given the old key, refuses too and the batch waits; given the
    # new key, it follows, and the waiting batch is delivered and signed with the new key.
    _, stats = _predict(model, admin, timeout=1)
    assert stats["pending"] == 10
    monkeypatch.setenv(signing.KEY_ENV, str(new_key))
    after, stats = _predict(model, admin)
    assert stats["captured"] == 30 and stats["pending"] == 0

    for prediction_id, key in ((before[0], old_key), (after[0], new_key)):
        found = admin.get_prediction(prediction_id)
        assert found.verified and found.key_id == _key_id(key), found.verification
        assert admin.trace(prediction_id).steps[0].verified
    assert capture_verification.verify_batches(server.store) == (3, [])


@pytest.mark.sqlite_only  # a SQLite file made at revision 0003 by design
def test_upgrading_a_bound_store_starts_its_history_with_the_bound_key(tmp_path: Path) -> None:
    database = tmp_path / "old" / "clew.db"
    database.parent.mkdir()
    engine = create_engine(f"sqlite:///{database}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    pem = signatures.public_pem(signing._load(_made(tmp_path / "bound.pem")).public_key()).decode()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        connection.execute(
            text("INSERT INTO store_info (key, value) VALUES ('capture_public_key', :pem)"),
            {"pem": pem},
        )
        connection.execute(
            text(
                "INSERT INTO audit_log (seq, time_ms, actor, action, target, request_id, "
                "payload_digest, prev_hash, hash) VALUES (1, 1700000000000, 'clew', "
                "'signing.bind', 'store:capture-key', 'r', :digest, 'p', 'h')"
            ),
            {"digest": digests.digest_json({"key_id": _pem_id(pem), "public_key": pem})},
        )
        connection.execute(text("INSERT INTO store_info (key, value) VALUES ('audit_head', '1:h')"))
    engine.dispose()

    store = open_store(database.parent)
    try:
        [first] = signing.key_history(store)
        assert first == SigningKey(
            signatures.key_id(pem.encode()), pem, "clew", 1_700_000_000_000, None
        )
        assert signing.public_keys(store) == {first.key_id: pem.encode()}
    finally:
        store.close()
