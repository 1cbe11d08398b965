"""Two ``clew server`` processes on one PostgreSQL + S3, as behind a load balancer.

Writers on both servers at once register versions of one model, log runs and post capture
batches; every idempotent request (same ``Idempotency-Key`` or capture batch id) goes to both
servers at the same time, as a client's retry through a load balancer can. Then one server is
killed with SIGKILL while requests stream to it, and each request it did not answer is retried
on the other with the same key. Either way versions stay unique and gapless, the audit chain
stays single and intact, every idempotent request lands once and every batch is signed once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import free_port
from server_fixtures import RunningServer, serve, wait_until_ready
from sklearn.datasets import load_iris
from sqlalchemy import select
from test_registry import train

import clew
from clew.client.remote_capture import ARROW_STREAM, encode
from clew.domain import ids
from clew.domain.captures import Call, CaptureTarget
from clew.service import accounts, audit, capture_verification, record_check, signing
from clew.store import schema
from clew.store.location import Store, open_store

pytestmark = [pytest.mark.postgres, pytest.mark.s3]
LAUNCHER = "import typer; from clew.cli.server import server; typer.run(server)"
START_SECONDS = 90  # two cold interpreters importing clew on a busy 2-core machine


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@dataclass
class Cluster:
    store: Store
    token: str
    replicas: list[Replica]
    clients: list[httpx.Client] = field(default_factory=list)


def _start(port: int, environment: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "--port", str(port)],
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def cluster(postgres_url: str, s3_artifacts: str, tmp_path: Path) -> Iterator[Cluster]:
    """Two server processes sharing the database, the bucket prefix and the signing key."""
    store = open_store(postgres_url, s3_artifacts)
    accounts.create_user(store, "alice", "admin", actor="test-admin")
    token = accounts.create_token(store, "alice", actor="test-admin").secret
    key = tmp_path / "capture-key.pem"
    signing.create_key_file(key)
    environment = os.environ | {
        "CLEW_URI": postgres_url,
        "CLEW_ARTIFACTS": s3_artifacts,
        "CLEW_SIGNING_KEY": str(key),
        "CLEW_HOME": str(tmp_path / "replica-home"),
    }
    replicas = []
    for number in range(2):
        port = free_port()
        process = _start(port, environment, tmp_path / f"server-{number}.log")
        replicas.append(Replica(f"http://127.0.0.1:{port}", process))
    running = Cluster(store, token, replicas)
    try:
        deadline = time.monotonic() + START_SECONDS
        for replica in replicas:
            wait_until_ready(replica.url, replica.process, deadline)
        headers = {"Authorization": f"Bearer {token}"}
        running.clients = [
            httpx.Client(base_url=replica.url, headers=headers, timeout=30) for replica in replicas
        ]
        yield running
    finally:
        for client in running.clients:
            client.close()
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.terminate()
                replica.process.wait(30)
        store.close()


@dataclass
class Workload:
    """The requests of one scenario and what each idempotent key got back."""

    cluster: Cluster
    artifact_id: str
    target: CaptureTarget
    answers: dict[str, set[Any]] = field(default_factory=dict)
    batch_ids: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, order: list[int], key: str, request: Callable[[httpx.Client], Any]) -> None:
        """Try the servers in ``order`` (a load balancer failing over on a dead server)."""
        for index in order:
            try:
                answer = request(self.cluster.clients[index])
            except httpx.TransportError:
                continue
            with self.lock:
                self.answers.setdefault(key, set()).add(answer)
            return
        raise AssertionError(f"no server answered {key}")

    def register(self, client: httpx.Client, key: str) -> int:
        response = client.post(
            "/api/v1/models/iris/versions",
            json={"source": f"artifact:{self.artifact_id}"},
            headers={"Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
        return response.json()["version"]

    def log_run(self, client: httpx.Client, key: str) -> str:
        response = client.post(
            "/api/v1/runs",
            json={"experiment": "replicas", "name": key, "params": {"key": key}},
            headers={"Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def capture(self, client: httpx.Client, key: str) -> str:
        with self.lock:
            batch_id = self.batch_ids.setdefault(key, ids.new_id())
            body = self.bodies.setdefault(key, _capture_body(self.target))
        response = client.post(
            "/api/v1/models/iris/versions/1/captures",
            content=body,
            params={"batch": batch_id},
            headers={"Content-Type": ARROW_STREAM},
        )
        assert response.status_code in (200, 201), response.text
        return response.json()["batch"]

    def operations(self, prefix: str, count: int) -> list[tuple[str, Callable[..., Any]]]:
        """``count`` requests, registrations, runs and captures in turn, each with its key."""
        kinds = [self.register, self.log_run, self.capture]
        return [
            (f"{prefix}-{kinds[number % 3].__name__}-{number:03d}", kinds[number % 3])
            for number in range(count)
        ]


def _capture_body(target: CaptureTarget) -> bytes:
    """One 10-row predict call of iris/1, encoded as the SDK posts it (a retry resends it)."""
    call = Call(ids.new_id(), 1_700_000_000_000, 10, np.arange(10), load_iris().data[:10])
    return encode(target, [call])


def _workload(cluster: Cluster) -> Workload:
    alice = clew.connect(cluster.replicas[0].url, token=cluster.token)
    _, artifact = train(alice)
    version = alice.register_model(artifact, "iris")
    alice.close()
    target = CaptureTarget(version.id, "iris", version.version, version.digest)
    return Workload(cluster, artifact.id, target)


def _check_store(workload: Workload) -> None:
    """One answer per key, versions 1..n, one run per key, each batch once and signed."""
    store = workload.cluster.store
    assert all(len(answers) == 1 for answers in workload.answers.values()), workload.answers
    registered = [next(iter(a)) for k, a in workload.answers.items() if "register" in k]
    with store.db.read() as connection:
        versions = sorted(connection.execute(select(schema.model_versions.c.version)).scalars())
        run_names = list(
            connection.execute(
                select(schema.runs.c.name).where(schema.runs.c.name.contains("-log_run-"))
            ).scalars()
        )
    assert versions == list(range(1, len(versions) + 1))
    assert sorted(registered) == versions[1:]
    run_keys = [key for key in workload.answers if "log_run" in key]
    assert sorted(run_names) == sorted(run_keys)
    batch_ids = {next(iter(a)) for k, a in workload.answers.items() if "capture" in k}
    assert batch_ids == set(workload.batch_ids.values())
    assert sorted(batch.id for batch in capture_verification.all_batches(store)) == sorted(
        batch_ids
    )
    checked, problems = capture_verification.verify_batches(store)
    assert checked == len(batch_ids) and problems == []
    assert audit.verify_chain(store)[1] is None
    assert record_check.verify_records(store)[1] == []
    registrations = audit.entries(store, action="model.register")
    assert len(registrations) == len(versions)


def test_concurrent_writers_on_two_servers_land_once_in_order(cluster: Cluster) -> None:
    workload = _workload(cluster)
    jobs = []
    with ThreadPoolExecutor(8) as pool:
        for key, kind in workload.operations("both", 24):
            for order in ([0, 1], [1, 0]):  # the same key to both servers at once

                def request(client: httpx.Client, kind: Any = kind, key: str = key) -> Any:
                    return kind(client, key)

                jobs.append(pool.submit(workload.send, order, key, request))
        for job in jobs:
            job.result()
    _check_store(workload)


def test_a_server_killed_mid_stream_loses_and_doubles_nothing(cluster: Cluster) -> None:
    workload = _workload(cluster)
    doomed = cluster.replicas[1]
    answered = threading.Semaphore(0)
    jobs = []

    def request_for(kind: Any, key: str) -> Callable[[httpx.Client], Any]:
        def request(client: httpx.Client) -> Any:
            answer = kind(client, key)
            answered.release()
            return answer

        return request

    with ThreadPoolExecutor(8) as pool:
        for key, kind in workload.operations("kill", 60):
            jobs.append(pool.submit(workload.send, [1, 0], key, request_for(kind, key)))
        for _ in range(12):
            assert answered.acquire(timeout=30)
        doomed.kill()
        for job in jobs:
            job.result()
    assert doomed.process.returncode == -signal.SIGKILL
    _check_store(workload)


@pytest.fixture
def in_process_pair(
    postgres_url: str, s3_artifacts: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[RunningServer]]:
    """Two apps in this process, each with its own opened store on the one database and
    bucket prefix (cheaper to start than processes; the race below needs no kill)."""
    key = tmp_path / "capture-key.pem"
    signing.create_key_file(key)
    monkeypatch.setenv("CLEW_SIGNING_KEY", str(key))
    with contextlib.ExitStack() as stack:
        pair = [
            stack.enter_context(
                contextlib.contextmanager(serve)(
                    open_store(postgres_url, s3_artifacts), tmp_path / name
                )
            )
            for name in ("a", "b")
        ]
        yield pair


def test_one_batch_id_posted_to_both_servers_at_once_keeps_the_recorded_file_intact(
    in_process_pair: list[RunningServer],
) -> None:
    """A client that reuses a batch id for other rows while its first post is still being
    written: whichever post is recorded, its signed file is the one stored, never overwritten
    by the other post's file."""
    first = in_process_pair[0]
    token = first.user("alice", "admin")
    alice = clew.connect(first.url, token=token)
    _, artifact = train(alice)
    version = alice.register_model(artifact, "iris")
    alice.close()
    target = CaptureTarget(version.id, "iris", version.version, version.digest)
    clients = [server.http(token) for server in in_process_pair]
    batch_ids = [ids.new_id() for _ in range(6)]
    bodies = {batch: [_capture_body(target), _capture_body(target)] for batch in batch_ids}
    start = threading.Barrier(2)

    def post(side: int, batch: str) -> int:
        start.wait()
        response = clients[side].post(
            "/api/v1/models/iris/versions/1/captures",
            content=bodies[batch][side],
            params={"batch": batch},
            headers={"Content-Type": ARROW_STREAM},
        )
        return response.status_code

    with ThreadPoolExecutor(2) as pool:
        for batch in batch_ids:
            answers = sorted(pool.map(post, [0, 1], [batch, batch]))
            assert answers == [200, 201]
    for client in clients:
        client.close()
    checked, problems = capture_verification.verify_batches(first.store)
    assert checked == len(batch_ids) and problems == []


def test_failed_token_checks_on_both_servers_count_against_one_limit(cluster: Cluster) -> None:
    """A client spread over both servers gets the limit once, not once per server: five bad
    tokens on each, then both refuse it, even its valid token (issue 14)."""
    bad = {"Authorization": "Bearer clew_not-a-token"}
    urls = [f"{replica.url}/api/v1/whoami" for replica in cluster.replicas]
    statuses = [httpx.get(urls[n % 2], headers=bad).status_code for n in range(10)]
    assert statuses == [401] * 10
    for url in reversed(urls):
        refused = httpx.get(url, headers=bad)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) > 0
    valid = {"Authorization": f"Bearer {cluster.token}"}
    for url in urls:  # each server reads the refused addresses back within a second
        deadline = time.monotonic() + 30
        while (answer := httpx.get(url, headers=valid)).status_code == 200:
            assert time.monotonic() < deadline, "a server kept answering a refused address"
            time.sleep(0.25)
        assert answer.status_code == 429, answer.text
