"""Load: a realistic mix against ``clew server`` and ``mlflow server`` on one PostgreSQL.

Both servers are real subprocesses with the same ``--workers``, each on its own database of
one throwaway PostgreSQL cluster started here (clew's blobs and captures on a SeaweedFS
started here too; MLflow's artifact root is a local directory, which this mix never writes).
``--clients`` (default 4, 16, 64) load-generator processes each keep one connection and send
operations back to back for ``--seconds``, after every client has connected and 2 s of
warm-up; each operation is one HTTP request, drawn with these weights (MLflow's nearest
equivalent in brackets):

* 30 resolve an alias (``GET /resolve?ref=churn@champion`` [``registered-models/alias``])
* 20 read a run (``GET /runs/<id>`` [``runs/get``])
* 10 start a run with two params (``POST /runs`` [``runs/create`` + params in ``log-batch``...
  counted as one: ``runs/create`` only])
* 15 log params on a run (``POST /runs/<id>/params`` [``runs/log-batch`` with params])
* 15 capture a batch of 10 predictions, signed (``POST .../captures`` [``runs/log-batch`` with
  10 metrics: MLflow has no prediction capture])
* 6 register a version (``POST /models/churn/versions`` [``model-versions/create``])
* 4 approve one of those versions, an e-signature by a second user (``POST .../approve`` with
  the signing token [``model-versions/set-tag approved``: MLflow has no approvals])

Reported per server and client count: operations/s, p50 and p99 latency, and the servers'
CPU per operation (process-group CPU time / operations), the honest figure on a shared machine.

Two ways of loading, both reported:

* **Closed loop** (saturation): each client sends its next operation as soon as the last one is
  answered, with no think time. This measures the most the servers can do, and its latency is
  set by Little's law, not by the server's speed: N clients always in the system with
  throughput X have a mean response time R = N / X. At 64 clients, a p99 <= 250 ms needs a mean
  below 250 ms, so X >= 64 / 0.25 = 256 ops/s; the 2 cores give 2,000 ms of CPU per second,
  so each operation may cost at most 2,000 / 256 = 7.8 ms of CPU in total (server, PostgreSQL,
  SeaweedFS and this generator together) with the cores 100% busy, and since under queueing a
  p99 sits at 2-4x the mean (measured p99 / p50 here: 3-5x), about 4 ms in practice. The server
  alone costs 10-13 ms of CPU per operation of this mix: a closed-loop p99 <= 250 ms at 64
  clients is out of reach on 2 cores by arithmetic, whatever the server does, until the whole
  operation costs ~4 ms.
* **Open loop** (``--rate``, latency at a stated load): each client sends at Poisson arrival
  times, ``--rate`` operations/s per client (offered load = rate x clients), whether or not the
  last answer came back. Latency is measured from the *scheduled* send time, so time spent
  waiting behind a slow answer counts (no coordinated omission: a client that falls behind
  sends at once and the lag is in its latencies). The offered load must be below both servers'
  saturation for the p99 to mean anything; the report prints the achieved rate beside it.
  The default, 0.5 ops/s per client (32 ops/s at 64 clients), is argued in docs/benchmarks.md.
  ``--rate 0`` runs the closed loop only.

``--soak MINUTES`` instead drives the mix at ``--soak-clients`` (16) against clew's server
alone for that long, sampling the resident memory of its process group every ``SAMPLE_S``
seconds: memory is meaningful even on a busy machine, where timings are not. It reports the
RSS after the first minute (caches and pools warm), at the end and at most, and holds the
growth from the first minute to the end to ``TARGET_SOAK_GROWTH``.

    uv sync --group bench
    uv run --group bench python benchmarks/bench_load.py [--clients 4,16,64] [--seconds 10]
    uv run --group bench python benchmarks/bench_load.py --rate 0.5   # open loop, per client
    uv run --group bench python benchmarks/bench_load.py --soak 10
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_server import (
    BIN,
    MLFLOW_UVICORN,
    free_port,
    group_cpu_seconds,
    running,
    seaweedfs,
)
from report import Result, finish, parser, percentile

import clew
from clew.client.remote_capture import ARROW_STREAM, encode
from clew.domain import ids
from clew.domain.captures import Call, CaptureTarget
from clew.service import accounts
from clew.store.location import open_store

MIX = {
    "resolve": 30,
    "read_run": 20,
    "start_run": 10,
    "log_params": 15,
    "capture": 15,
    "register": 6,
    "approve": 4,
}
NAME = "churn"
ALIAS = "champion"
TARGET_RATIO = 5.0
TARGET_P99_MS = 250.0
SAMPLE_S = 5.0
SOAK_WARM_S = 60.0
TARGET_SOAK_GROWTH = 1.10  # RSS at the end within 10% of RSS after the first minute
DEFAULT_RATE = 0.5  # open loop: operations/s per client (docs/benchmarks.md says why)


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class Postgres:
    directory: Path
    port: int

    def url(self, database: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the cluster's live processes: the postmaster and its
        children (each of which runs in a session of its own)."""
        postmaster = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid, _, rest = stat.read_text().partition(" (")
                fields = rest.rsplit(")", 1)[1].split()
            except OSError:
                continue
            if postmaster in (int(pid), int(fields[1])):
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def create(self, database: str) -> str:
        import psycopg

        plain = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {database}")
        return self.url(database)


def _as_postgres(*command: str) -> None:
    if os.geteuid() == 0:
        command = ("runuser", "-u", "postgres", "--", *command)
    subprocess.run(command, check=True, capture_output=True, cwd=tempfile.gettempdir())


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise SystemExit(f"PostgreSQL's {name} is not installed (apt-get install postgresql).")
    return str(found)


@contextmanager
def postgres() -> Iterator[Postgres]:
    """A throwaway cluster, durable as a production one would be (fsync on)."""
    directory = Path(tempfile.mkdtemp(prefix="clew-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data = str(directory / "data")
    _as_postgres(_pg_binary("initdb"), "-D", data, "-U", "postgres", "-A", "trust")
    server = Postgres(directory, free_port())
    options = (
        f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=400"
    )
    pg_ctl = _pg_binary("pg_ctl")
    _as_postgres(pg_ctl, "-D", data, "-o", options, "-l", str(directory / "log"), "-w", "start")
    try:
        yield server
    finally:
        _as_postgres(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------- servers and their fixtures


@dataclass
class Setup:
    """What every load process needs to address one server."""

    kind: str
    url: str
    headers: dict[str, str]
    approver: dict[str, str]
    run_id: str
    source: str
    group: int  # the server's process group, whose CPU is counted
    target: CaptureTarget | None = None


@contextmanager
def clew_setup(directory: Path, pg: Postgres, artifacts: str, workers: int) -> Iterator[Setup]:
    uri = pg.create("clew_bench")
    store = open_store(uri, artifacts, create=True)
    accounts.create_user(store, "bench", "admin", actor="bench")
    accounts.create_user(store, "val", "approver", actor="bench")
    token = accounts.create_token(store, "bench", actor="bench").secret
    val = accounts.create_token(store, "val", actor="bench").secret
    val_signing = accounts.create_token(store, "val", actor="bench", purpose="signing").secret
    store.close()
    key = directory / "capture-key.pem"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "clew"), "server", "--uri", uri, "--artifacts", artifacts]
    command += ["--port", str(port), "--workers", str(workers)]
    env = {"CLEW_SIGNING_KEY": str(key), "CLEW_UI_SECRET": uuid.uuid4().hex}
    subprocess.run([str(BIN / "clew"), "keys", "create", str(key)], check=True, capture_output=True)
    with running(command, url, "/api/v1/health", directory / "clew-server.log", env) as process:
        client = clew.connect(url, token=token)
        model = directory / "model.bin"
        model.write_bytes(b"a model")
        with client.start_run(experiment="bench", name="train", capture_code=False) as run:
            logged = run.log_output(model, name=f"{NAME}-model", type="model")
        version = client.register_model(logged, NAME)
        client.promote(f"{NAME}/1", ALIAS, new_alias=True)
        client.close()
        target = CaptureTarget(version.id, NAME, version.version, version.digest)
        headers = {"Authorization": f"Bearer {token}"}
        approver = {"Authorization": f"Bearer {val}", "X-Clew-Signing-Token": val_signing}
        source = f"artifact:{logged.id}"
        yield Setup("clew", url, headers, approver, run.id, source, process.pid, target)


@contextmanager
def mlflow_setup(directory: Path, pg: Postgres, workers: int) -> Iterator[Setup]:
    uri = pg.create("mlflow_bench")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", uri]
    command += ["--default-artifact-root", (directory / "mlartifacts").as_uri()]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    command += MLFLOW_UVICORN
    with running(command, url, "/health", directory / "mlflow-server.log") as process:
        api = _Connection(url, {})
        experiment = _first_call(api, "/api/2.0/mlflow/experiments/create", {"name": "bench"})
        run = api.call("POST", "/api/2.0/mlflow/runs/create", experiment)["run"]["info"]
        api.call("POST", "/api/2.0/mlflow/registered-models/create", {"name": NAME})
        source = f"runs:/{run['run_id']}/model"
        api.call(
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            {"name": NAME, "source": source, "run_id": run["run_id"]},
        )
        api.call(
            "POST",
            "/api/2.0/mlflow/registered-models/alias",
            {"name": NAME, "alias": ALIAS, "version": "1"},
        )
        yield Setup("mlflow", url, {}, {}, run["run_id"], source, process.pid)


def _first_call(api: _Connection, path: str, body: dict[str, str]) -> Any:
    """The first POST to a server that answers its health check: on a loaded machine MLflow's
    workers may still drop it (they are still importing), so it is retried for up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return api.call("POST", path, body)
        except (http.client.HTTPException, ConnectionError):
            if time.monotonic() > deadline:
                raise
            api.connection.close()
            time.sleep(1)


# ---------------------------------------------------------------- the load generator


class _Connection:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.address = url.removeprefix("http://")
        self.headers = headers
        self.connection = http.client.HTTPConnection(self.address, timeout=120)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Any:
        sent = {**self.headers, **(headers or {})}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=data, headers=sent)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.connection.close()
            self.connection.request(method, path, body=data, headers=sent)
            response = self.connection.getresponse()
        payload = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None


class ClewOps:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.http = _Connection(setup.url, setup.headers)
        self.pending: list[int] = []
        self.run_id = ""
        self.start_run()  # params go to a run of this client's, still open

    def resolve(self) -> None:
        self.http.call("GET", f"/api/v1/resolve?ref={NAME}%40{ALIAS}")

    def read_run(self) -> None:
        self.http.call("GET", f"/api/v1/runs/{self.setup.run_id}")

    def start_run(self) -> None:
        body = {"experiment": "load", "name": "load", "params": {"lr": 0.1, "depth": 6}}
        self.run_id = self.http.call("POST", "/api/v1/runs", body)["id"]

    def log_params(self) -> None:
        params = {f"p{random.randrange(1_000_000)}": random.random()}
        self.http.call("POST", f"/api/v1/runs/{self.run_id}/params", {"params": params})

    def capture(self) -> None:
        assert self.setup.target is not None
        self.http.call(
            "POST",
            f"/api/v1/models/{NAME}/versions/1/captures?batch={ids.new_id()}",
            headers={"Content-Type": ARROW_STREAM},
            raw=capture_body(self.setup.target),
        )

    def register(self) -> None:
        version = self.http.call(
            "POST", f"/api/v1/models/{NAME}/versions", {"source": self.setup.source}
        )
        self.pending.append(version["version"])

    def approve(self) -> None:
        if not self.pending:
            self.register()
            return
        version = self.pending.pop()
        self.http.call(
            "POST",
            f"/api/v1/models/{NAME}/versions/{version}/approve",
            {"comment": "load test"},
            headers=self.setup.approver,
        )


def capture_body(target: CaptureTarget) -> bytes:
    """One batch of 10 predictions as the SDK sends it (an Arrow IPC stream)."""
    call = Call(ids.new_id(), int(time.time() * 1000), 10, np.arange(10), None)
    return encode(target, [call])


def warm_before_fork(setup: Setup) -> None:
    """Import in the parent what the clients' operations import on first use, so no forked
    client pays for it. Encoding a capture batch imports pandas the first time (``encode``
    builds the rows through it): 64 clients each importing it inside the measured window cost
    ~1 CPU-s apiece on the machine the servers share, which was the "collapse" at 64 clients
    (p99 18 s, with every slow request a capture)."""
    if setup.target is not None:
        capture_body(setup.target)


class MlflowOps:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.http = _Connection(setup.url, {})
        self.pending: list[str] = []
        self.experiment = "0"
        self.run_id = ""
        self.start_run()

    def resolve(self) -> None:
        self.http.call("GET", f"/api/2.0/mlflow/registered-models/alias?name={NAME}&alias={ALIAS}")

    def read_run(self) -> None:
        self.http.call("GET", f"/api/2.0/mlflow/runs/get?run_id={self.setup.run_id}")

    def start_run(self) -> None:
        body = {"experiment_id": self.experiment, "run_name": "load"}
        run = self.http.call("POST", "/api/2.0/mlflow/runs/create", body)
        self.run_id = run["run"]["info"]["run_id"]

    def log_params(self) -> None:
        params = [{"key": f"p{random.randrange(1_000_000)}", "value": str(random.random())}]
        body = {"run_id": self.run_id, "params": params}
        self.http.call("POST", "/api/2.0/mlflow/runs/log-batch", body)

    def capture(self) -> None:
        now = int(time.time() * 1000)
        metrics = [
            {"key": "prediction", "value": float(row), "timestamp": now, "step": row}
            for row in range(10)
        ]
        body = {"run_id": self.run_id, "metrics": metrics}
        self.http.call("POST", "/api/2.0/mlflow/runs/log-batch", body)

    def register(self) -> None:
        body = {"name": NAME, "source": self.setup.source, "run_id": self.setup.run_id}
        version = self.http.call("POST", "/api/2.0/mlflow/model-versions/create", body)
        self.pending.append(version["model_version"]["version"])

    def approve(self) -> None:
        if not self.pending:
            self.register()
            return
        body = {"name": NAME, "version": self.pending.pop(), "key": "approved", "value": "val"}
        self.http.call("POST", "/api/2.0/mlflow/model-versions/set-tag", body)


Job = tuple[Setup, int, dict[str, int], float]
Timing = tuple[str, float, float]  # operation, latency ms, wall time it was answered
DRAIN_S = 30.0  # open loop: how long past the end a client may still work off its backlog
READY_TIMEOUT_S = 600.0


@dataclass
class Start:
    """Shared by the parent and its forked clients: each client counts itself ``ready`` once
    its connection and first run exist, then waits for ``go``; the parent sets the measured
    ``window`` (measure_from, stop_at) only when every client is ready. On a loaded machine 64
    clients took longer to start than a fixed 2 s warm-up, and the window measured nothing."""

    ready: Any
    go: Any
    window: Any


_start: Start | None = None  # set in each forked client by the pool's initializer


def _init(start: Start) -> None:
    global _start
    _start = start


def _client(job: Job) -> list[Timing]:
    """One load process until ``stop_at``; operations started after ``measure_from`` are timed.
    Closed loop (``rate`` 0): back to back, timed from the send. Open loop: Poisson arrivals at
    ``rate`` per second, timed from the scheduled arrival, so a queue behind a slow answer shows
    in the latency instead of silently lowering the offered load."""
    setup, seed, mix, rate = job
    random.seed(seed)
    ops = ClewOps(setup) if setup.kind == "clew" else MlflowOps(setup)
    assert _start is not None
    with _start.ready.get_lock():
        _start.ready.value += 1
    _start.go.wait()
    measure_from, stop_at = _start.window[:]
    names, weights = list(mix), list(mix.values())
    timings: list[Timing] = []
    scheduled = time.time() + (random.expovariate(rate) if rate else 0.0)
    while scheduled < stop_at and time.time() < stop_at + DRAIN_S:
        if rate:
            time.sleep(max(0.0, scheduled - time.time()))
        else:
            scheduled = time.time()
        name = random.choices(names, weights)[0]
        getattr(ops, name)()
        if scheduled >= measure_from:
            answered = time.time()
            timings.append((name, (answered - scheduled) * 1000, answered))
        if rate:
            scheduled += random.expovariate(rate)
    return timings


@dataclass
class Measured:
    operations_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    operations: Counter[str]
    timings: list[Timing]
    offered_per_s: float = 0.0  # open loop: rate x clients; 0 for the closed loop

    def by_operation(self) -> str:
        """Each operation's count, p50, p99 and slowest (ms): where a tail comes from."""
        lines = []
        for name in sorted(self.operations):
            ms = [took for kind, took, _ in self.timings if kind == name]
            lines.append(
                f"  {name:12s} {len(ms):6d} ops  p50 {percentile(ms, 0.50):8.1f}  "
                f"p99 {percentile(ms, 0.99):8.1f}  max {max(ms):8.1f} ms"
            )
        return "\n".join(lines)


def drive(
    setup: Setup, clients: int, seconds: float, mix: dict[str, int] = MIX, rate: float = 0.0
) -> Measured:
    """``clients`` processes: once all are ready, 2 s of warm-up and ``seconds`` measured;
    ``rate`` > 0 is the open loop at that many operations/s per client."""
    jobs: list[Job] = [(setup, seed, mix, rate) for seed in range(clients)]
    warm_before_fork(setup)
    context = multiprocessing.get_context("fork")
    start = Start(context.Value("i", 0), context.Event(), context.Array("d", 2))
    with context.Pool(clients, initializer=_init, initargs=(start,)) as pool:
        pending = pool.map_async(_client, jobs, chunksize=1)
        _wait_ready(start, clients, pending)
        measure_from = time.time() + 2.0
        stop_at = measure_from + seconds
        start.window[:] = [measure_from, stop_at]
        start.go.set()
        time.sleep(max(0.0, measure_from - time.time()))
        cpu_before = group_cpu_seconds(setup.group)
        time.sleep(seconds)
        cpu = group_cpu_seconds(setup.group) - cpu_before
        per_client = pending.get()
    timings = [entry for client in per_client for entry in client]
    latencies = [ms for _, ms, _ in timings]
    answered = sum(1 for _, _, at in timings if at <= stop_at)  # within the measured window
    return Measured(
        answered / seconds,
        percentile(latencies, 0.50) if latencies else float("nan"),
        percentile(latencies, 0.99) if latencies else float("nan"),
        cpu * 1000 / max(answered, 1),
        Counter(name for name, _, _ in timings),
        timings,
        rate * clients,
    )


def _wait_ready(start: Start, clients: int, pending: Any) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while start.ready.value < clients:
        if pending.ready():
            pending.get()  # a client failed before it was ready: raise its error
        if time.monotonic() > deadline:
            raise SystemExit(f"only {start.ready.value} of {clients} clients started.")
        time.sleep(0.1)


def per_operation(seconds: float, workers: int) -> None:
    """Each operation alone from one client: the servers' CPU per operation, side by side."""
    cpu: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="clew-bench-load-") as temp, postgres() as pg:
        directory = Path(temp)
        with seaweedfs(directory) as (aws, _weed):
            os.environ.update(aws)
            with clew_setup(directory, pg, "s3://bench/clew", workers) as setup:
                cpu["clew"] = {name: drive(setup, 1, seconds, {name: 1}).cpu_ms for name in MIX}
        with mlflow_setup(directory, pg, workers) as setup:
            cpu["mlflow"] = {name: drive(setup, 1, seconds, {name: 1}).cpu_ms for name in MIX}
    print("server CPU ms per operation, one client (clew, MLflow):")
    for name in MIX:
        print(f"  {name:12s} {cpu['clew'][name]:8.2f} {cpu['mlflow'][name]:8.2f}")


_ACTIVITY = """
    SELECT coalesce(state, '-'), coalesce(wait_event_type, '-'), coalesce(wait_event, '-'),
           left(regexp_replace(query, '\\s+', ' ', 'g'), 70), count(*)
    FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
    GROUP BY 1, 2, 3, 4
"""
_LOCKS = """
    SELECT locktype, mode, granted, count(*) FROM pg_locks
    WHERE database = (SELECT oid FROM pg_database WHERE datname = %s) GROUP BY 1, 2, 3
"""


def _watch(pg: Postgres, database: str, seen: Counter[str], stop: threading.Event) -> None:
    """Every 0.2 s, what the database's backends are doing and which locks they hold or wait
    for, summed over the run (so the counts are backend-samples)."""
    import psycopg

    with psycopg.connect(pg.url(database).replace("+psycopg", ""), autocommit=True) as db:
        while not stop.wait(0.2):
            seen["samples"] += 1
            for state, kind, event, query, count in db.execute(_ACTIVITY, (database,)):
                seen[f"activity {state} | {kind}:{event} | {query}"] += count
            for locktype, mode, granted, count in db.execute(_LOCKS, (database,)):
                seen[f"lock {locktype} {mode} {'held' if granted else 'WAITING'}"] += count


def diagnose(levels: list[int], seconds: float, workers: int, mix: dict[str, int]) -> None:
    """clew alone at each client count: each operation's latency, and what PostgreSQL's
    backends were doing meanwhile (``pg_stat_activity``, ``pg_locks``)."""
    with tempfile.TemporaryDirectory(prefix="clew-bench-load-") as temp, postgres() as pg:
        directory = Path(temp)
        with seaweedfs(directory) as (aws, _weed):
            os.environ.update(aws)
            with clew_setup(directory, pg, "s3://bench/clew", workers) as setup:
                for clients in levels:
                    seen: Counter[str] = Counter()
                    stop = threading.Event()
                    watcher = threading.Thread(target=_watch, args=(pg, "clew_bench", seen, stop))
                    watcher.start()
                    try:
                        measured = drive(setup, clients, seconds, mix)
                    finally:
                        stop.set()
                        watcher.join()
                    print(
                        f"{clients} clients: {measured.operations_per_s:.1f} ops/s, p50 "
                        f"{measured.p50_ms:.1f} ms, p99 {measured.p99_ms:.1f} ms, server CPU "
                        f"{measured.cpu_ms:.2f} ms/op"
                    )
                    print(measured.by_operation())
                    samples = max(seen.pop("samples", 1), 1)
                    print(f"  PostgreSQL, mean backends per sample ({samples} samples):")
                    for what, count in seen.most_common(25):
                        print(f"    {count / samples:6.2f}  {what}")
            log = (directory / "clew-server.log").read_text(errors="replace")
            print(f"server log: {len(log.splitlines())} lines; the last requests:")
            print("\n".join(log.splitlines()[-25:-10]))


def warm_up(setup: Setup, workers: int) -> None:
    """An unmeasured round of the mix with enough clients to reach every worker: each worker's
    first capture imports Parquet, object-store and signing code (seconds on a busy machine),
    which otherwise landed in the first measured level."""
    drive(setup, 4 * workers, 3.0)


Levels = dict[str, dict[tuple[int, float], Measured]]


def _measure(
    setup: Setup, levels: list[int], seconds: float, rate: float
) -> dict[tuple[int, float], Measured]:
    """Each client count closed-loop, then (``rate`` > 0) open-loop at ``rate`` per client."""
    loads = [0.0, rate] if rate else [0.0]
    return {
        (clients, load): drive(setup, clients, seconds, rate=load)
        for load in loads
        for clients in levels
    }


def results_for(levels: list[int], seconds: float, workers: int, rate: float) -> list[Result]:
    measured: Levels = {}
    with tempfile.TemporaryDirectory(prefix="clew-bench-load-") as temp, postgres() as pg:
        directory = Path(temp)
        with seaweedfs(directory) as (aws, _weed):
            os.environ.update(aws)
            artifacts = "s3://bench/clew"
            with clew_setup(directory, pg, artifacts, workers) as setup:
                warm_up(setup, workers)
                measured["clew"] = _measure(setup, levels, seconds, rate)
        with mlflow_setup(directory, pg, workers) as setup:
            warm_up(setup, workers)
            measured["mlflow"] = _measure(setup, levels, seconds, rate)
    results: list[Result] = []
    for key in measured["clew"]:
        results += _rows(key, measured["clew"][key], measured["mlflow"][key])
    return results


def _rows(key: tuple[int, float], ours: Measured, peer: Measured) -> list[Result]:
    """Throughput, p50 and p99 of one level, clew beside MLflow."""
    clients, rate = key
    if rate:
        level = f"open loop, {clients} clients x {rate:g}/s = {ours.offered_per_s:g} ops/s offered"
    else:
        level = f"closed loop, {clients} clients"
    mix = ", ".join(f"{name} {count}" for name, count in sorted(ours.operations.items()))
    cpu = f"server CPU per op: clew {ours.cpu_ms:.2f} ms, MLflow {peer.cpu_ms:.2f} ms"
    row = {"peer_name": "mlflow server"}
    return [
        Result(
            "load",
            f"{level}: {'answered' if rate else 'throughput'}",
            "ops/s",
            True,
            ours.operations_per_s,
            peer.operations_per_s,
            target_ratio=None if rate else TARGET_RATIO,
            note=f"{cpu}; clew's ops: {mix}",
            **row,
        ),
        Result("load", f"{level}: p50", "ms", False, ours.p50_ms, peer.p50_ms, **row),
        Result(
            "load",
            f"{level}: p99",
            "ms",
            False,
            ours.p99_ms,
            peer.p99_ms,
            target_value=TARGET_P99_MS if clients == 64 else None,
            **row,
        ),
    ]


# ---------------------------------------------------------------- soak


def group_rss_mib(process_group: int) -> float:
    """Resident memory (MiB) of every live process of a process group (server and workers)."""
    total_kib = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != process_group:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError, IndexError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def _sample(group: int, samples: list[tuple[float, float]], stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.wait(SAMPLE_S):
        samples.append((time.monotonic() - started, group_rss_mib(group)))


def soak_results(minutes: float, clients: int, workers: int) -> list[Result]:
    """The mix against clew's server for ``minutes``, its process group's RSS sampled."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="clew-bench-soak-") as temp, postgres() as pg:
        directory = Path(temp)
        with seaweedfs(directory) as (aws, _weed):
            os.environ.update(aws)
            with clew_setup(directory, pg, "s3://bench/clew", workers) as setup:
                sampler = threading.Thread(target=_sample, args=(setup.group, samples, stop))
                sampler.start()
                try:
                    measured = drive(setup, clients, minutes * 60)
                finally:
                    stop.set()
                    sampler.join()
    warm = next(rss for at, rss in samples if at >= SOAK_WARM_S)
    end, peak = samples[-1][1], max(rss for _, rss in samples)
    trail = " ".join(f"{rss:.0f}" for at, rss in samples if at % 60 < SAMPLE_S)
    print(f"RSS MiB once a minute: {trail}")
    shape = f"{clients} clients x {minutes:g} min, --workers {workers}"
    return [
        Result(
            "soak",
            "server RSS, end / after 1 min",
            "x",
            False,
            end / warm,
            target_value=TARGET_SOAK_GROWTH,
            note=f"{shape}: {warm:.0f} MiB after 1 min, {end:.0f} at the end, {peak:.0f} at "
            f"most; {measured.operations_per_s:.1f} ops/s, {sum(measured.operations.values()):,}"
            " operations",
        )
    ]


def _mix(text: str | None) -> dict[str, int]:
    if not text:
        return MIX
    weights = dict(part.split("=") for part in text.split(","))
    unknown = set(weights) - set(MIX)
    if unknown:
        raise SystemExit(f"--mix names unknown operations {sorted(unknown)}; use {sorted(MIX)}.")
    return {name: int(weight) for name, weight in weights.items()}


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--clients", default="4,16,64", help="client counts, comma-separated")
    arguments.add_argument("--seconds", type=float, help="measured seconds per level (10)")
    arguments.add_argument(
        "--workers", type=int, default=2, help="server worker processes, the same for both"
    )
    arguments.add_argument(
        "--per-operation", action="store_true", help="CPU per operation type, one at a time"
    )
    arguments.add_argument(
        "--soak", type=float, metavar="MINUTES", help="a soak of clew's server, RSS sampled"
    )
    arguments.add_argument("--soak-clients", type=int, default=16, help="clients in the soak")
    arguments.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help="open loop: Poisson arrivals, operations/s per client, latency from the scheduled "
        f"send ({DEFAULT_RATE:g}; 0 runs the closed loop only)",
    )
    arguments.add_argument(
        "--mix", help="with --diagnose, other weights: name=weight,... (default: MIX)"
    )
    arguments.add_argument(
        "--diagnose",
        action="store_true",
        help="clew alone: latency per operation and PostgreSQL's activity and locks",
    )
    options = arguments.parse_args()
    if options.soak:
        results = soak_results(options.soak, options.soak_clients, options.workers)
        finish("clew server soak: memory under the mix", results, options.json)
        return
    if options.per_operation:
        per_operation(options.seconds or 3.0, options.workers)
        return
    levels = [int(count) for count in options.clients.split(",")]
    seconds = options.seconds or (4.0 if options.quick else 10.0)
    if options.diagnose:
        diagnose(levels, seconds, options.workers, _mix(options.mix))
        return
    results = results_for(levels, seconds, options.workers, options.rate)
    finish("clew server vs MLflow server: a realistic mix on one PostgreSQL", results, options.json)


if __name__ == "__main__":
    main()
