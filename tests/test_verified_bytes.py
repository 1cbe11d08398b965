"""Every approved byte checked: registering, approving and promoting re-hash the version's bytes
(its digest and every file of its manifest), manifests are checked when their blob arrives and
again at registration, and separation of duties covers everyone upstream of a version.

The SDK tests run on every backend and through the server (``client``, ``store``, ``as_user``);
the raw-request tests post to a real test server the way an attacker would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from test_cli_registry import assert_one_line_error, invoke
from test_registry import iris_frame, train
from test_server_registry import APPROVAL, register_version, signing_token

import clew
from clew.domain import digests
from clew.domain.records import ArtifactRecord
from clew.errors import InvalidInputError, PolicyError, UnverifiedBytesError
from clew.integrations.flavors import MODEL_FILE
from clew.service.artifacts import ArtifactService
from clew.store.blobs import LocalBlobStore
from clew.store.location import Store

if TYPE_CHECKING:
    from server_fixtures import AsUser, RunningServer

pytest_plugins = ("server_fixtures",)


def damage(store: Store, digest: str, data: bytes | None = None) -> None:
    """Remove the stored bytes of ``digest`` (``data`` None) or overwrite them in place, as a
    failing disk or someone with write access to the blob store would."""
    blobs = store.blobs
    if isinstance(blobs, LocalBlobStore):
        path = blobs.path_for(digest)
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
    elif data is None:
        blobs.delete(digest)
    else:
        blobs.fs.pipe_file(blobs.key_for(digest), data)


def model_file(store: Store, artifact: ArtifactRecord) -> str:
    """The digest of the model file inside a model directory's manifest."""
    return store.blobs.read_manifest(artifact.digest)[MODEL_FILE]


def bad_manifest(store: Store, entry: str = "../../../escaped") -> str:
    """A directory manifest with an escaping entry, put straight into the store (as bytes written
    before uploads were checked would be); returns its digest."""
    payload = store.blobs.put_bytes(b"payload")
    manifest = {"kind": "clew.manifest/v1", "files": {entry: payload.digest}}
    return digests.digest_bytes(digests.canonical_json(manifest))


# --- finding 3: no version without verified bytes (SDK, every backend and the server) --------


@pytest.mark.parametrize("which", ["manifest", "model file"])
def test_registering_a_model_whose_bytes_are_missing_is_refused(
    client: clew.Client, store: Store, which: str
) -> None:
    _, artifact = train(client)
    missing = artifact.digest if which == "manifest" else model_file(store, artifact)
    damage(store, missing)
    with pytest.raises(UnverifiedBytesError, match=f"model:iris-lr.*{missing}.*missing"):
        client.register_model(artifact, "iris")
    assert client.list_models().empty


def test_approve_and_promote_refuse_bytes_altered_after_registration(
    client: clew.Client, store: Store, as_user: AsUser
) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    altered = model_file(store, artifact)
    damage(store, altered, b'{"flavor": "tampered"}')
    bob = as_user("bob")
    with pytest.raises(UnverifiedBytesError, match=f"iris/1.*{altered}.*does not match"):
        bob.approve("iris/1", "validated on the holdout")
    with pytest.raises(UnverifiedBytesError, match=f"iris/1.*{altered}"):
        bob.promote("iris/1", "staging")
    assert bob.version_status("iris/1")["approvals"] == 0
    assert bob.version_status("iris/1")["aliases"] == []


def test_approve_and_promote_refuse_bytes_that_vanished(
    client: clew.Client, store: Store, as_user: AsUser
) -> None:
    _, artifact = train(client)
    client.register_model(artifact, "iris")
    bob = as_user("bob")
    bob.approve("iris/1", "validated on the holdout")
    damage(store, artifact.digest)
    with pytest.raises(UnverifiedBytesError, match="missing"):
        bob.promote("iris/1", "staging")
    with pytest.raises(UnverifiedBytesError, match="missing"):
        as_user("carol").approve("iris/1", "second look")


def test_a_model_recorded_by_reference_cannot_be_registered(client: clew.Client) -> None:
    with client.start_run("iris", "train", capture_code=False) as run:
        artifact = run.log_output("s3://models/churn/model.pkl", name="remote-model", type="model")
    with pytest.raises(UnverifiedBytesError, match=r"model:remote-model.*by reference"):
        client.register_model(artifact, "remote")


def test_the_cli_refuses_to_register_missing_bytes_in_one_line(
    client: clew.Client, store: Store
) -> None:
    _, artifact = train(client)
    damage(store, artifact.digest)
    assert_one_line_error(invoke("register", f"artifact:{artifact.id}", "iris"), "missing")


# --- finding 3 through raw requests: the ghost model ------------------------------------------


@pytest.fixture
def carol(server: RunningServer) -> httpx.Client:
    with server.http(server.user("carol")) as http:
        yield http


def test_a_ghost_model_cannot_be_registered_through_the_server(carol: httpx.Client) -> None:
    never_uploaded = digests.digest_bytes(b"bytes the store never had")
    artifact = carol.post(
        "/api/v1/artifacts",
        json={"direction": "output", "type": "model", "name": "ghost", "digest": never_uploaded},
    )
    assert artifact.status_code == 201, artifact.text
    response = carol.post(
        "/api/v1/models/ghostmodel/versions", json={"source": f"artifact:{artifact.json()['id']}"}
    )
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "unverified_bytes"
    assert "model:ghost" in response.json()["message"] and never_uploaded in response.text
    assert carol.get("/api/v1/models/ghostmodel").status_code == 404


def test_approve_and_promote_through_the_server_check_the_bytes(
    server: RunningServer, carol: httpx.Client
) -> None:
    version = register_version(carol)
    damage(server.store, version["digest"])
    victor = server.user("victor", "approver")
    with server.http(victor) as http:
        approved = http.post(
            "/api/v1/models/churn/versions/1/approve",
            json=APPROVAL,
            headers={"X-Clew-Signing-Token": signing_token(server, "victor")},
        )
        promoted = http.post("/api/v1/models/churn/aliases/staging", json={"version": 1})
    for response in (approved, promoted):
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "unverified_bytes"
        assert version["digest"] in response.json()["message"]


# --- finding 4: manifests checked on arrival and at registration ------------------------------


def test_a_manifest_uploaded_after_its_record_is_checked_when_it_arrives(
    server: RunningServer, carol: httpx.Client
) -> None:
    payload = digests.digest_bytes(b"payload")
    assert carol.put(f"/api/v1/blobs/{payload}", content=b"payload").status_code == 201
    manifest = digests.canonical_json(
        {"kind": "clew.manifest/v1", "files": {"../../../escaped": payload}}
    )
    manifest_digest = digests.digest_bytes(manifest)
    artifact = carol.post(
        "/api/v1/artifacts",
        json={
            "direction": "output",
            "type": "model",
            "name": "evil-model",
            "digest": manifest_digest,
            "properties": {"kind": "directory"},
        },
    )
    assert artifact.status_code == 201, artifact.text
    uploaded = carol.put(f"/api/v1/blobs/{manifest_digest}", content=manifest)
    assert uploaded.status_code == 400, uploaded.text
    assert uploaded.json()["code"] == "invalid_input"
    assert "'../../../escaped' in a directory manifest is refused" in uploaded.json()["message"]
    assert not server.store.blobs.exists(manifest_digest)
    registered = carol.post(
        "/api/v1/models/evil/versions", json={"source": f"artifact:{artifact.json()['id']}"}
    )
    assert registered.status_code == 409, registered.text


def test_registration_checks_the_manifest_again(
    client: clew.Client, store: Store, as_user: AsUser
) -> None:
    manifest = digests.canonical_json(
        {
            "kind": "clew.manifest/v1",
            "files": {"a/../../escaped": store.blobs.put_bytes(b"x").digest},
        }
    )
    record = ArtifactService(store).log(
        run_id=None,
        direction="output",
        type_="model",
        name="evil-model",
        digest=digests.digest_bytes(manifest),
        actor="mallory",
        properties={"kind": "directory"},
    )
    store.blobs.put_bytes(manifest)  # arrived behind the upload check (an older server wrote it)
    with pytest.raises(
        InvalidInputError, match=re.escape("'a/../../escaped' in a directory manifest")
    ):
        client.register_model(f"artifact:{record.id}", "evil")
    assert client.list_models().empty


def test_the_sdk_logging_path_checks_manifests_too(client: clew.Client, store: Store) -> None:
    manifest = digests.canonical_json(
        {"kind": "clew.manifest/v1", "files": {"/etc/passwd": store.blobs.put_bytes(b"x").digest}}
    )
    stored = store.blobs.put_bytes(manifest)
    with pytest.raises(InvalidInputError, match="'/etc/passwd' in a directory manifest"):
        ArtifactService(store).log(
            run_id=None,
            direction="output",
            type_="directory",
            name="disguised",
            digest=stored.digest,
            actor="mallory",
            blobs={stored.digest: (stored.size, "file")},
        )


# --- finding 5: separation of duties across the thread ----------------------------------------


def log_model_file(
    client: clew.Client, path: Path, name: str, **options: object
) -> tuple[str, ArtifactRecord]:
    with client.start_run("churn", "train", capture_code=False) as run:
        artifact = run.log_output(path, name=name, type="model", **options)  # type: ignore[arg-type]
    return run.id, artifact


def test_the_first_uploader_of_the_model_may_not_approve_it(
    client: clew.Client, as_user: AsUser, tmp_path: Path
) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights")
    log_model_file(as_user("bob"), path, "churn-model")
    alice = as_user("alice")
    alice_run, _ = log_model_file(alice, path, "churn-model")
    alice.register_model(f"run:{alice_run}", "churn")
    bob = as_user("bob")
    with pytest.raises(
        PolicyError,
        match=r"'bob' uploaded artifact model:churn-model .* and may not approve churn/1 "
        r"\(separation of duties\)",
    ):
        bob.approve("churn/1", "looks fine")
    assert as_user("carol").approve("churn/1", "validated").actor == "carol"


def test_whoever_trained_a_model_this_one_derives_from_may_not_approve(
    client: clew.Client, as_user: AsUser, tmp_path: Path
) -> None:
    base_path, export_path = tmp_path / "base.bin", tmp_path / "export.onnx"
    base_path.write_bytes(b"base weights")
    export_path.write_bytes(b"exported weights")
    log_model_file(as_user("carol"), base_path, "churn-base")  # carol uploaded it first
    bob_run, base = log_model_file(as_user("bob"), base_path, "churn-base")
    assert base.created_by == "carol"
    alice = as_user("alice")
    _, exported = log_model_file(alice, export_path, "churn-onnx", derived_from=[base])
    alice.register_model(exported, "churn")
    with pytest.raises(
        PolicyError, match=f"'bob' ran run {bob_run}, which produced model:churn-base"
    ):
        as_user("bob").approve("churn/1", "looks fine")
    with pytest.raises(PolicyError, match="'carol' uploaded artifact model:churn-base"):
        as_user("carol").approve("churn/1", "looks fine")
    assert as_user("dave").approve("churn/1", "validated").actor == "dave"


def test_the_walk_stops_at_the_training_inputs(
    client: clew.Client, as_user: AsUser, tmp_path: Path
) -> None:
    """Whoever first logged a shared dataset (or the code and environment records every run
    shares) did not build this model and may still validate it."""
    bob = as_user("bob")
    with bob.start_run("churn", "explore", capture_code=False) as run:
        dataset = run.log_input(iris_frame(), name="iris-train")
    alice = as_user("alice")
    _, artifact = train(alice)
    version = alice.register_model(artifact, "iris")
    assert dataset.created_by == "bob"
    assert as_user("bob").approve(version.ref, "validated").actor == "bob"


def test_a_runless_uploader_may_not_approve_through_the_server(
    server: RunningServer, carol: httpx.Client
) -> None:
    data = b"model uploaded without a run"
    digest = digests.digest_bytes(data)
    bob = server.user("bob", "approver")
    with server.http(bob) as http:
        assert http.put(f"/api/v1/blobs/{digest}", content=data).status_code == 201
        artifact = http.post(
            "/api/v1/artifacts",
            json={
                "direction": "output",
                "type": "model",
                "name": "churn-model",
                "digest": digest,
                "blobs": {digest: [len(data), "file"]},
            },
        ).json()
    registered = carol.post(
        "/api/v1/models/churn/versions", json={"source": f"artifact:{artifact['id']}"}
    )
    assert registered.status_code == 201, registered.text
    with server.http(bob) as http:
        response = http.post(
            "/api/v1/models/churn/versions/1/approve",
            json=APPROVAL,
            headers={"X-Clew-Signing-Token": signing_token(server, "bob")},
        )
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "policy_violation"
    assert "'bob' uploaded artifact model:churn-model" in response.json()["message"]
    assert "may not approve churn/1 (separation of duties)" in response.json()["message"]
