"""Recording a by-reference source never touches the network unless asked (issue 16).

The object store here is a listening socket (an ``http://`` source, or the S3 endpoint) that
counts every connection made to it and drops it: describing a source must return at once and
leave the count at zero, on every backend (the SDK prepares a source in the caller's process;
the server never fetches one).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import clew


class CountingEndpoint:
    """A TCP endpoint that accepts, counts and closes every connection."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.05)
        self.connections = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                peer, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            peer.close()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def endpoint() -> Iterator[CountingEndpoint]:
    """An object store that answers nobody; sources below live on it (``http://``)."""
    counting = CountingEndpoint()
    yield counting
    counting.close()


@pytest.fixture
def unreachable_s3(endpoint: CountingEndpoint, monkeypatch: pytest.MonkeyPatch) -> CountingEndpoint:
    """S3 settings that point at the endpoint (the store's own S3 settings would be
    overridden too, so only for stores that are not on S3)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nothing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return endpoint


@pytest.mark.sqlite_only
def test_an_s3_source_makes_no_connection(
    client: clew.Client, unreachable_s3: CountingEndpoint
) -> None:
    uri = "s3://lake/raw/orders/2026-12-07.parquet"
    with client.start_run(experiment="sources", name="read") as run:
        recorded = run.log_input(clew.data_source(uri, name="orders"))
    assert unreachable_s3.connections == 0
    assert (recorded.uri, recorded.size, recorded.properties["etag"]) == (uri, None, None)


def test_a_data_source_records_what_it_was_told_without_a_connection(
    client: clew.Client, endpoint: CountingEndpoint
) -> None:
    uri = f"{endpoint.url}/lake/raw/orders/2026-12-07.parquet"
    with client.start_run(experiment="sources", name="read") as run:
        recorded = run.log_input(clew.data_source(uri, name="orders", version="v3", owner="crm"))
    assert endpoint.connections == 0
    assert (recorded.type, recorded.name, recorded.uri, recorded.size) == (
        "data_source",
        "orders",
        uri,
        None,
    )
    assert recorded.properties == {
        "reference": True,
        "etag": None,
        "version": "v3",
        "owner": "crm",
    }
    node = client.lineage.upstream(f"run:{run.id}", max_depth=1).nodes[recorded.id]
    assert (node.facts["source_uri"], node.facts["version"]) == (uri, "v3")


def test_the_same_source_described_twice_is_one_node(
    client: clew.Client, endpoint: CountingEndpoint
) -> None:
    """Without the network the digest covers the URI alone, so a source is one node."""
    source = clew.data_source(f"{endpoint.url}/lake/raw/customers/", name="customers")
    with client.start_run(experiment="sources", name="first") as first:
        one = first.log_input(source)
    with client.start_run(experiment="sources", name="second") as second:
        two = second.log_input(source)
    assert one.id == two.id
    down = client.lineage.downstream("data_source:customers", max_depth=1)
    assert {edge.destination_id for edge in down.edges} == {first.id, second.id}
    assert endpoint.connections == 0


def test_a_source_in_a_bulk_batch_is_never_fetched(
    client: clew.Client, endpoint: CountingEndpoint
) -> None:
    """``client.lineage.ingest`` takes the digest the caller computed; the URI is a fact."""
    uri = f"{endpoint.url}/lake/raw/clicks/"
    described = clew.data_source(uri, name="clicks")
    with client.start_run(experiment="sources", name="log") as run:
        logged = run.log_input(described)
    result = client.lineage.ingest(
        [
            {
                "key": "clicks",
                "type": "data_source",
                "name": "clicks",
                "digest": logged.digest,
                "uri": uri,
            }
        ],
        [{"key": "sessionize", "name": "sessionize", "inputs": ["clicks"]}],
    )
    assert result.artifacts["clicks"] == logged.id
    assert endpoint.connections == 0
