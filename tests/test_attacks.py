"""The attacks registries have suffered, each refused with a 4xx and a clear message.

Every test asserts both halves: the refusal (status, stable code, a message naming the problem)
and that nothing was read or written outside the store.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import clew
from clew.domain import digests
from clew.errors import InvalidInputError

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)

SECRET = "root:x:0:0:TOP-SECRET-MARKER"


@pytest.fixture
def alice(server: RunningServer) -> httpx.Client:
    with server.http(server.user("alice")) as client:
        yield client


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A file outside the store that no request may read."""
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


# --- paths ----------------------------------------------------------------------------------

TRAVERSALS = [
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "..%5C..%5Cwindows%5Cwin.ini",
    "sha256%3A..%2F..%2Fsecret",
    "%2Fetc%2Fpasswd",
    "sha256:" + "a" * 63 + "%00",
    "SHA256:" + "A" * 64,
]


@pytest.mark.parametrize("digest", TRAVERSALS)
def test_blob_urls_cannot_traverse(
    server: RunningServer, alice: httpx.Client, digest: str, secret_file: Path
) -> None:
    before = files_under(server.root)
    for response in (
        alice.get(f"/api/v1/blobs/{digest}"),
        alice.get(f"/api/v1/blobs/{digest}/size"),
        alice.put(f"/api/v1/blobs/{digest}", content=b"evil"),
    ):
        assert 400 <= response.status_code < 500
        assert response.json()["code"] in {"invalid_input", "not_found", "method_not_allowed"}
        assert SECRET not in response.text
    assert files_under(server.root) == before
    assert not (secret_file.parent / "evil").exists()


def upload(client: httpx.Client, data: bytes) -> str:
    digest = digests.digest_bytes(data)
    response = client.put(f"/api/v1/blobs/{digest}", content=data)
    assert response.status_code == 201, response.text
    return digest


def refused_upload(client: httpx.Client, data: bytes) -> str:
    """Upload a directory manifest with an escaping entry: refused on arrival, nothing stored."""
    digest = digests.digest_bytes(data)
    response = client.put(f"/api/v1/blobs/{digest}", content=data)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_input"
    assert "in a directory manifest is refused" in response.json()["message"]
    assert client.get(f"/api/v1/blobs/{digest}/size").status_code == 404
    return digest


@pytest.mark.parametrize(
    "entry",
    [
        "../escaped.txt",
        "a/../../escaped.txt",
        "/etc/passwd",
        "C:/Windows/win.ini",
        "..\\..\\escaped.txt",
        "a\x00b",
        "%2e%2e/escaped.txt",
        "%252e%252e%252fescaped.txt",
        "a//b",
    ],
)
def test_directory_manifests_cannot_escape(
    server: RunningServer, alice: httpx.Client, entry: str
) -> None:
    file_digest = upload(alice, b"payload")
    manifest = {"kind": "clew.manifest/v1", "files": {entry: file_digest}}
    data = digests.canonical_json(manifest)
    manifest_digest = refused_upload(alice, data)
    server.store.blobs.put_bytes(data)  # as if stored before uploads were checked
    response = alice.post(
        "/api/v1/artifacts",
        json={
            "direction": "output",
            "type": "model",
            "name": "evil-model",
            "digest": manifest_digest,
            "blobs": {manifest_digest: [10, "manifest"], file_digest: [7, "file"]},
        },
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert "in a directory manifest is refused" in response.json()["message"]
    missing = alice.get("/api/v1/artifacts", params={"ref": "model:evil-model"})
    assert missing.status_code == 404


def test_a_manifest_disguised_as_a_file_is_still_checked(
    server: RunningServer, alice: httpx.Client
) -> None:
    file_digest = upload(alice, b"payload")
    manifest = {"kind": "clew.manifest/v1", "files": {"../../escaped": file_digest}}
    data = b"  \n" + digests.canonical_json(manifest)
    manifest_digest = refused_upload(alice, data)
    server.store.blobs.put_bytes(data)  # as if stored before uploads were checked
    response = alice.post(
        "/api/v1/artifacts",
        json={
            "direction": "output",
            "type": "directory",
            "name": "disguised",
            "digest": manifest_digest,
            "blobs": {manifest_digest: [len(data), "file"]},
        },
    )
    assert response.status_code == 400
    assert "in a directory manifest is refused" in response.json()["message"]


def test_symlinks_out_of_an_uploaded_directory_are_refused(
    server: RunningServer, tmp_path: Path, secret_file: Path
) -> None:
    client = clew.connect(server.url, token=server.user("alice"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w")
    (model / "link").symlink_to(secret_file)
    with client.start_run("churn", name="train") as run, pytest.raises(InvalidInputError):
        run.log_output(model, name="linked")
    assert not client.store.blobs.exists(digests.digest_bytes(SECRET.encode()))
    client.close()


# --- URIs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "/etc/passwd",
        "../../etc/passwd",
        "s3://bucket/key.parquet#../../etc/passwd",
        "https://user:password@example.com/data.csv",
        "javascript:alert(1)",
        "ftp://example.com/data.csv",
        "s3://bucket/\x00key",
    ],
)
def test_reference_uris_pointing_outside_an_object_store_are_refused(
    alice: httpx.Client, uri: str
) -> None:
    response = alice.post(
        "/api/v1/artifacts",
        json={
            "direction": "input",
            "type": "dataset",
            "name": "ref",
            "digest": digests.digest_json({"uri": uri}),
            "uri": uri,
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_input"
    assert "reference URI" in response.json()["message"]
    assert SECRET not in response.text


def test_reference_uris_are_recorded_as_text_only(alice: httpx.Client) -> None:
    uri = "s3://lake/does-not-exist/customers.parquet"
    response = alice.post(
        "/api/v1/artifacts",
        json={
            "direction": "input",
            "type": "data_source",
            "name": "customers",
            "digest": digests.digest_json({"uri": uri}),
            "uri": uri,
            "properties": {"reference": True},
        },
    )
    assert response.status_code == 201
    assert response.json()["uri"] == uri
    assert response.json()["size"] is None


# --- markup ---------------------------------------------------------------------------------


def test_html_and_script_come_back_escaped_json(alice: httpx.Client) -> None:
    payload = "<script>alert('x')</script><img src=x onerror=alert(1)>&amp;"
    created = alice.post(
        "/api/v1/runs",
        json={
            "experiment": "xss",
            "name": payload,
            "params": {"p": payload},
            "tags": {"t": payload},
            "properties": {"description": payload},
        },
    )
    assert created.status_code == 201
    fetched = alice.get(f"/api/v1/runs/{created.json()['id']}")
    for response in (created, fetched):
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "<" not in response.text and ">" not in response.text
        assert "\\u003cscript\\u003e" in response.text
        body = response.json()
        assert body["name"] == payload and body["tags"]["t"] == payload
        assert body["properties"]["description"] == payload


# --- bodies ---------------------------------------------------------------------------------


def test_oversized_bodies_are_refused(server: RunningServer, alice: httpx.Client) -> None:
    huge = b'{"name": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    declared = alice.post(
        "/api/v1/runs", content=huge, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.json()["code"] == "payload_too_large"

    def chunks() -> Any:
        for _ in range(34):
            yield b"x" * (1024 * 1024)

    streamed = alice.post(
        "/api/v1/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert "larger than" in streamed.json()["message"]
    assert alice.post("/api/v1/runs/search", json={}).json() == []


def test_deeply_nested_json_is_refused(alice: httpx.Client) -> None:
    depth = 100_000
    bomb = '{"name": "n", "properties": {"a": ' + "[" * depth + "]" * depth + "}}"
    response = alice.post(
        "/api/v1/runs", content=bomb, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    nested: Any = "leaf"
    for _ in range(40):
        nested = {"k": nested}
    response = alice.post("/api/v1/runs", json={"name": "n", "properties": nested})
    assert response.status_code == 400
    assert "nested deeper than 32 levels" in response.json()["message"]
    assert alice.post("/api/v1/runs/search", json={}).json() == []


def test_huge_metric_batches_are_refused(alice: httpx.Client) -> None:
    run_id = alice.post("/api/v1/runs", json={"name": "n"}).json()["id"]
    points = [["m", 1.0, step, 1] for step in range(200_001)]
    response = alice.post(f"/api/v1/runs/{run_id}/metrics", json={"points": points})
    assert response.status_code == 422
    assert "points" in response.json()["message"]
    assert alice.get(f"/api/v1/runs/{run_id}/metric-history", params={"key": "m"}).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 123}, "name"),
        ({"name": "n", "seed": "5"}, "seed"),
        ({"name": "n", "seed": 2**70}, "seed"),
        ({"name": "n", "params": []}, "params"),
        ({"name": "n", "surprise": 1}, "surprise"),
        ({"name": ""}, "name"),
        ([], "body"),
    ],
)
def test_wrong_types_are_refused(alice: httpx.Client, body: Any, field: str) -> None:
    response = alice.post("/api/v1/runs", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert field in response.json()["message"]


@pytest.mark.parametrize(
    "point",
    [["m", "1.5", 0, 1], ["m", True, 0, 1], ["m", 1.0, 2**70, 1], ["m", 1.0, 0.5, 1], [1, 1, 1, 1]],
)
def test_bad_metric_points_are_refused(alice: httpx.Client, point: list[Any]) -> None:
    run_id = alice.post("/api/v1/runs", json={"name": "n"}).json()["id"]
    response = alice.post(f"/api/v1/runs/{run_id}/metrics", json={"points": [point]})
    assert response.status_code == 422
    assert "points.0" in response.json()["message"]


def test_malformed_json_is_refused(alice: httpx.Client) -> None:
    for text in ('{"name": "n"', "not json", '{"name": "n"}}', "\xff\xfe"):
        response = alice.post(
            "/api/v1/runs", content=text.encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, text
        assert response.json()["code"] == "invalid_input"


# --- bytes ----------------------------------------------------------------------------------


def test_an_upload_whose_digest_does_not_match_stores_nothing(
    server: RunningServer, alice: httpx.Client
) -> None:
    claimed = digests.digest_bytes(b"the real model")
    before = files_under(server.root)
    response = alice.put(f"/api/v1/blobs/{claimed}", content=b"a substituted model")
    assert response.status_code == 400
    assert response.json()["code"] == "digest_mismatch"
    assert "nothing was stored" in response.json()["message"]
    assert alice.get(f"/api/v1/blobs/{claimed}/size").status_code == 404
    substituted = digests.digest_bytes(b"a substituted model")
    assert alice.get(f"/api/v1/blobs/{substituted}/size").status_code == 404
    assert files_under(server.root) == before


class _Bomb:
    """Unpickling this creates a marker file: proof that someone deserialized it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_the_server_never_unpickles_uploaded_models(
    server: RunningServer, alice: httpx.Client, tmp_path: Path
) -> None:
    marker = tmp_path / "server-unpickled-me"
    bomb = pickle.dumps(_Bomb(marker))
    blob = upload(alice, bomb)
    manifest = digests.canonical_json({"kind": "clew.manifest/v1", "files": {"model.pkl": blob}})
    manifest_digest = upload(alice, manifest)
    run_id = alice.post("/api/v1/runs", json={"name": "train"}).json()["id"]
    created = alice.post(
        "/api/v1/artifacts",
        json={
            "run_id": run_id,
            "direction": "output",
            "type": "model",
            "name": "bomb",
            "digest": manifest_digest,
            "properties": {"flavor": {"name": "sklearn", "file": "model.pkl"}},
            "blobs": {manifest_digest: [len(manifest), "manifest"], blob: [len(bomb), "file"]},
        },
    )
    assert created.status_code == 201, created.text
    artifact_id = created.json()["id"]
    assert alice.get(f"/api/v1/artifacts/{artifact_id}").status_code == 200
    assert alice.get(
        "/api/v1/lineage/upstream", params={"ref": f"artifact:{artifact_id}"}
    ).is_success
    assert alice.get(f"/api/v1/blobs/{blob}").content == bomb
    assert not marker.exists()


def test_error_bodies_never_echo_secrets_or_markup(alice: httpx.Client) -> None:
    response = alice.get("/api/v1/runs/<script>alert(1)</script>")
    assert response.status_code in (404, 422)
    assert "<script>" not in response.text
    assert json.loads(response.text)["code"] in {"not_found", "invalid_input"}
