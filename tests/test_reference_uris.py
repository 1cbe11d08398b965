"""Reference URIs follow one rule on every backend (``service.uploads.check_reference_uri``):
the embedded store refuses what the server refuses, and nothing is recorded or fetched."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

import clew
from clew.domain import digests
from clew.errors import InvalidInputError
from clew.service.artifacts import ArtifactService
from clew.store import schema

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)

DANGEROUS = [
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "/etc/passwd",
    "s3://bucket/key.parquet#../../etc/passwd",
    "https://user:password@example.com/data.csv",
    "javascript:alert(1)",
    "ftp://example.com/data.csv",
    "local:///etc/passwd",
    "zip://member::file:///tmp/archive.zip",
    "simplecache::s3://bucket/key",
    "s3://bucket/key::file:///etc/passwd",
]


def _artifact_count(client: clew.Client) -> int:
    with client.store.db.read() as connection:
        return int(connection.execute(select(func.count()).select_from(schema.artifacts)).scalar())


@pytest.mark.embedded_only
@pytest.mark.parametrize("uri", DANGEROUS)
def test_the_embedded_artifact_service_refuses_dangerous_uris(
    client: clew.Client, uri: str
) -> None:
    before = _artifact_count(client)
    with pytest.raises(InvalidInputError, match=r"reference URI .* is refused"):
        ArtifactService(client.store).log(
            run_id=None,
            direction="input",
            type_="dataset",
            name="ref",
            digest=digests.digest_json({"uri": uri}),
            actor="alice",
            uri=uri,
        )
    assert _artifact_count(client) == before


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passwd",
        "https://user:secret@example.com/data.csv",
        "s3://lake/raw.parquet#fragment",
    ],
)
def test_the_sdk_refuses_a_dangerous_data_source_on_both_backends(
    sdk: clew.Client, uri: str
) -> None:
    with (
        sdk.start_run("refs", name="prepare") as run,
        pytest.raises(InvalidInputError, match="is refused"),
    ):
        run.log_input(clew.data_source(uri, name="raw"))
    upstream = sdk.lineage.upstream(f"run:{run.id}").nodes.values()
    assert "raw" not in {node.name for node in upstream}


def test_label_schemes_and_object_stores_are_recorded_on_both_backends(sdk: clew.Client) -> None:
    """A scheme nothing can open names data outside any store: kept as text, never fetched."""
    with sdk.start_run("refs", name="prepare") as run:
        table = run.log_input(clew.data_source("postgres://crm/customers", name="customers"))
        bucket = run.log_input(clew.data_source("s3://lake/raw/orders/", name="orders"))
    assert table.uri == "postgres://crm/customers"
    assert bucket.uri == "s3://lake/raw/orders/"


ADDRESS_FORMS = [
    "http://127.0.0.1:{port}/x",
    "http://2130706433:{port}/x",
    "http://0x7f000001:{port}/x",
    "http://127.1:{port}/x",
    "http://0:{port}/x",
    "http://localhost:{port}/x",
    "http://[::1]:{port}/x",
    "http://169.254.169.254/latest/meta-data/",
]


def test_the_server_records_any_address_as_text_and_never_connects(
    server: RunningServer,
) -> None:
    """A recorded URI is a label: whatever address it spells, the server opens no connection
    (so no address filter is needed, and none pretends to be one)."""
    with socket.socket() as listener, server.http(server.user("alice")) as http:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        for form in ADDRESS_FORMS:
            uri = form.format(port=port)
            body = {
                "direction": "input",
                "type": "data_source",
                "name": "ref",
                "digest": digests.digest_json({"uri": uri}),
                "uri": uri,
            }
            created = http.post("/api/v1/artifacts", json=body)
            assert created.status_code == 201, created.text
            assert http.get(f"/api/v1/artifacts/{created.json()['id']}").json()["uri"] == uri
        with pytest.raises(BlockingIOError):
            listener.accept()
