"""Retries over a connection that loses responses: every write still happens exactly once.

A real TCP proxy sits between the SDK and the server and, for chosen requests, forwards the
request but drops the connection before the response reaches the client: the classic
"did my write happen?" failure. The SDK retries with the same Idempotency-Key and the server
answers from the first attempt.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import clew

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)


class LossyProxy:
    """Forwards HTTP/1.1 requests; drops the response of the first request per marker."""

    def __init__(self, upstream_port: int, markers: list[bytes]) -> None:
        self.upstream_port = upstream_port
        self.pending_drops = list(markers)
        self.dropped: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            reader, upstream_reader = client.makefile("rb"), upstream.makefile("rb")
            while request := _read_message(reader):
                upstream.sendall(request)
                response = _read_message(upstream_reader)
                if self._should_drop(request.split(b"\r\n", 1)[0]):
                    return
                client.sendall(response)

    def _should_drop(self, request_line: bytes) -> bool:
        with self._lock:
            for marker in self.pending_drops:
                if marker in request_line:
                    self.pending_drops.remove(marker)
                    self.dropped.append(request_line)
                    return True
        return False

    def close(self) -> None:
        self.listener.close()


def _read_message(reader) -> bytes:  # type: ignore[no-untyped-def]
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        if not line:
            return b""
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + reader.read(length)


@pytest.fixture
def lossy(server: RunningServer) -> Iterator[LossyProxy]:
    port = int(server.url.rsplit(":", 1)[1])
    proxy = LossyProxy(port, [b"POST /api/v1/runs ", b"/metrics ", b"/end ", b"/artifacts "])
    yield proxy
    proxy.close()


def test_lost_responses_never_duplicate_writes(server: RunningServer, lossy: LossyProxy) -> None:
    client = clew.connect(f"http://127.0.0.1:{lossy.port}", token=server.user("alice"))
    with client.start_run("churn", name="train", capture_code=False) as run:
        for step in range(5):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.flush()
        run.log_metric("auc", 0.9)
        run.log_input(clew.data_source("gs://lake/customers.parquet", name="customers"))
    assert len(lossy.dropped) == 4
    runs = client.search_runs()
    assert len(runs) == 1 and runs["status"].tolist() == ["FINISHED"]
    assert client.metric_history(run.id, "loss")["step"].tolist() == [0, 1, 2, 3, 4]
    assert client.metric_history(run.id, "auc")["step"].tolist() == [0]
    inputs = client._service.artifacts.run_artifacts(run.id)["inputs"]
    assert [artifact.name for artifact in inputs] == ["customers"]
    client.close()
