"""Team server: clew server vs MLflow's server over loopback HTTP, both on SQLite, in one run.

Both servers run as real subprocesses on 127.0.0.1 (free ports, fresh temp dirs, the same
``--workers``), started here and stopped at the end.

* alias resolution: ``GET /api/v1/resolve?ref=churn@champion`` (bearer token, so every request
  is authenticated and authorized) vs MLflow's ``GET /api/2.0/mlflow/registered-models/alias``.
  The same load generator drives both: ``--clients`` processes, each with one keep-alive
  connection sending requests back to back for ``--seconds``; requests/s, p50 and p99.
* metric logging: clew's remote SDK (``clew.connect(url, token=...)``, ``run.log_metric`` one
  point at a time, timed until ``run.end()`` has returned, so every point is stored) vs MLflow
  ``POST /api/2.0/mlflow/runs/log-batch`` with 1,000 metrics per request (its maximum).
* artifacts: a ``--mib`` MiB file through clew's server (``run.log_artifact`` up, then
  ``client.export_artifact`` down, both hashed end to end) with ``--artifacts s3://...`` on a
  SeaweedFS (``weed mini``) started here, vs boto3 ``upload_file`` / ``download_file`` straight
  to the same SeaweedFS: the raw loopback S3 throughput. Downloads are measured twice: the
  default (the server redirects to a presigned S3 URL), and relayed by a second server started
  with ``CLEW_PRESIGNED_DOWNLOADS=0``. ``--only artifacts --mib 64 --rounds 2`` runs in ~30 s.

    uv run --group bench python benchmarks/bench_server.py [--quick] [--workers N]
"""

from __future__ import annotations

import functools
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import Result, finish, parser, percentile, stopwatch

import clew
from clew.client.admin import WORKER_HEALTHCHECK_S
from clew.client.remote_blobs import DOWNLOAD_CONCURRENCY
from clew.server.routes.artifacts import PRESIGNED_ENV

BIN = Path(sys.executable).parent
NAME = "churn"
ALIAS = "champion"
MLFLOW_BATCH = 1_000
# The worker health-check timeout clew's server gives uvicorn (WORKER_HEALTHCHECK_S), given to
# MLflow's too: with uvicorn's default of 5 s, a loaded machine (load average 20+) had MLflow's
# workers killed while still importing, again and again, and the server never came up.
MLFLOW_UVICORN = ["--uvicorn-opts", f"--timeout-worker-healthcheck {WORKER_HEALTHCHECK_S}"]
TARGET_ALIAS = 5.0
TARGET_METRICS = 50.0
TARGET_ARTIFACTS = 0.8
BUCKET = "bench"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A started server process: its base URL and the headers every request carries."""

    url: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def _wait_until_up(process: subprocess.Popen[bytes], url: str, path: str, log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url} exited early:\n{log.read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"{url} did not come up:\n{log.read_text()[-2000:]}")


@contextmanager
def running(
    command: list[str], url: str, health: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command``, wait for ``health`` to answer 200, and stop it (group) at the end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        _wait_until_up(process, url, health, log)
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server's process group (uvicorn/gunicorn workers included)."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def admin_token(home: Path, env: dict[str, str]) -> str:
    """Create an admin user and an API token with the CLI, as an operator would."""
    clew_cli = str(BIN / "clew")
    environment = {**os.environ, **env}
    subprocess.run(
        [clew_cli, "admin", "create-user", "bench", "--role", "admin", "--uri", str(home)],
        check=True,
        capture_output=True,
        env=environment,
    )
    done = subprocess.run(
        [clew_cli, "admin", "create-token", "bench", "--uri", str(home)],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
    )
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def clew_server(
    directory: Path, workers: int, artifacts: str | None = None, env: dict[str, str] | None = None
) -> Iterator[Server]:
    home = directory / "clew"
    env = dict(env or {})
    command = [str(BIN / "clew"), "server", "--uri", str(home)]
    if artifacts:
        command += ["--artifacts", artifacts]
        env["CLEW_ARTIFACTS"] = artifacts
    token = admin_token(home, env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command += ["--port", str(port), "--workers", str(workers)]
    env["CLEW_UI_SECRET"] = uuid.uuid4().hex
    with running(command, url, "/api/v1/health", directory / "clew-server.log", env) as process:
        yield Server(url, {"Authorization": f"Bearer {token}"}, process)


@contextmanager
def mlflow_server(directory: Path, workers: int) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{directory / 'mlflow.db'}",
        "--default-artifact-root",
        (directory / "mlartifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *MLFLOW_UVICORN,
    ]
    with running(command, url, "/health", directory / "mlflow-server.log") as process:
        yield Server(url, {}, process)


class Http:
    """One keep-alive connection; ``call`` returns the decoded JSON or raises on >= 400."""

    def __init__(self, server: Server) -> None:
        self.connection = http.client.HTTPConnection(server.url.removeprefix("http://"))
        self.headers = server.headers

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # the server closed an idle keep-alive connection: one retry on a new one
            self.connection.close()
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
        payload = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None


# ---------------------------------------------------------------- alias resolution under load


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    server_cpu_ms: float


def _hammer(job: tuple[str, str, dict[str, str], float, float]) -> list[float]:
    """One client process: requests back to back on one connection until ``stop_at``; only
    those sent after ``measure_from`` are timed (the ones before warm up every worker)."""
    address, path, headers, measure_from, stop_at = job
    connection = http.client.HTTPConnection(address)
    timings: list[float] = []
    while (wall := time.time()) < stop_at:
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        if wall >= measure_from:
            timings.append((time.perf_counter() - started) * 1000)
    connection.close()
    return timings


def group_cpu_seconds(process_group: int) -> float:
    """CPU seconds (user + system) used so far by every live process of a process group."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == process_group:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def load(server: Server, path: str, clients: int, seconds: float) -> Load:
    """``clients`` processes hammer ``path``: 2 s of warm-up, then ``seconds`` measured."""
    Http(server).call("GET", path)
    address = server.url.removeprefix("http://")
    measure_from = time.time() + 2.0
    jobs = [(address, path, server.headers, measure_from, measure_from + seconds)] * clients
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        pending = pool.map_async(_hammer, jobs)
        time.sleep(max(0.0, measure_from - time.time()))
        cpu_before = group_cpu_seconds(server.process.pid)
        time.sleep(seconds)
        cpu = group_cpu_seconds(server.process.pid) - cpu_before
        per_client = pending.get()
    timings = [ms for client in per_client for ms in client]
    return Load(
        requests_per_s=len(timings) / seconds,
        p50_ms=percentile(timings, 0.50),
        p99_ms=percentile(timings, 0.99),
        requests=len(timings),
        server_cpu_ms=cpu * 1000 / len(timings),
    )


def clew_alias(server: Server, clients: int, seconds: float, directory: Path) -> Load:
    client = clew.connect(server.url, token=server.headers["Authorization"].split()[1])
    model = directory / "model.bin"
    model.write_bytes(b"a model")
    with client.start_run(experiment="bench", name="train", capture_code=False) as run:
        logged = run.log_output(model, name=f"{NAME}-model", type="model")
    client.register_model(logged, NAME)
    client.promote(f"{NAME}/1", ALIAS, new_alias=True)
    if client.get_version(f"{NAME}@{ALIAS}").version != 1:
        raise RuntimeError(f"clew resolved {NAME}@{ALIAS} to another version")
    client.close()
    return load(server, f"/api/v1/resolve?ref={NAME}%40{ALIAS}", clients, seconds)


def mlflow_alias(server: Server, clients: int, seconds: float) -> Load:
    api = Http(server)
    experiment = api.call("POST", "/api/2.0/mlflow/experiments/create", {"name": "bench"})
    run = api.call("POST", "/api/2.0/mlflow/runs/create", experiment)["run"]["info"]
    api.call("POST", "/api/2.0/mlflow/registered-models/create", {"name": NAME})
    api.call(
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        {"name": NAME, "source": f"runs:/{run['run_id']}/model", "run_id": run["run_id"]},
    )
    api.call(
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        {"name": NAME, "alias": ALIAS, "version": "1"},
    )
    path = f"/api/2.0/mlflow/registered-models/alias?name={NAME}&alias={ALIAS}"
    if api.call("GET", path)["model_version"]["version"] != "1":
        raise RuntimeError(f"MLflow resolved {NAME}@{ALIAS} to another version")
    return load(server, path, clients, seconds)


# ---------------------------------------------------------------- metric logging


def clew_metrics(server: Server, points: int) -> float:
    """Points/s through the remote SDK, including the final flush in ``run.end()``."""
    client = clew.connect(server.url, token=server.headers["Authorization"].split()[1])
    run = client.start_run(experiment="bench", name="metrics", capture_code=False)
    with stopwatch() as elapsed:
        for step in range(points):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.end()
    stored = len(client.metric_history(run.id, "loss"))
    client.close()
    if stored != points:
        raise RuntimeError(f"clew stored {stored} of {points} points")
    return points / elapsed[0]


def mlflow_metrics(server: Server, points: int) -> float:
    """Points/s through ``runs/log-batch``, 1,000 metrics per request."""
    api = Http(server)
    experiment = api.call("POST", "/api/2.0/mlflow/experiments/create", {"name": "metrics"})
    run_id = api.call("POST", "/api/2.0/mlflow/runs/create", experiment)["run"]["info"]["run_id"]
    now = int(time.time() * 1000)
    with stopwatch() as elapsed:
        for start in range(0, points, MLFLOW_BATCH):
            batch = [
                {"key": "loss", "value": 1.0 / (step + 1), "timestamp": now, "step": step}
                for step in range(start, min(start + MLFLOW_BATCH, points))
            ]
            api.call("POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "metrics": batch})
    return points / elapsed[0]


# ---------------------------------------------------------------- artifacts through S3


@contextmanager
def seaweedfs(directory: Path) -> Iterator[tuple[dict[str, str], int]]:
    """``weed mini`` on loopback (the test suite's command) with a bucket; yields the AWS env
    and the process group to count its CPU by."""
    weed = shutil.which("weed") or str(BIN / "weed")
    data = directory / "seaweed"
    data.mkdir()
    port = free_port()
    env = {
        "AWS_ACCESS_KEY_ID": "clewbench",
        "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        f"-s3.port={port}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={free_port()}",
        f"-volume.port={free_port()}",
        f"-filer.port={free_port()}",
        f"-master.port.grpc={free_port()}",
        f"-volume.port.grpc={free_port()}",
        f"-filer.port.grpc={free_port()}",
        f"-s3.port.grpc={free_port()}",
        f"-admin.port.grpc={free_port()}",
    ]
    with running(command, env["AWS_ENDPOINT_URL"], "/status", data / "weed.log", env) as weed:
        s3 = _boto3(env)
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield env, weed.pid


def _boto3(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def random_file(path: Path, mib: int) -> Path:
    with open(path, "wb") as writer:
        for _ in range(mib):
            writer.write(os.urandom(1024 * 1024))
    return path


def boto3_upload(s3: Any, source: Path) -> tuple[float, str]:
    """(seconds, key) of boto3's managed upload straight to SeaweedFS."""
    key = f"raw/{uuid.uuid4().hex}"
    with stopwatch() as up:
        s3.upload_file(str(source), BUCKET, key)
    return up[0], key


def boto3_download(s3: Any, key: str, source: Path, directory: Path) -> float:
    target = directory / "raw-download.bin"
    with stopwatch() as down:
        s3.download_file(BUCKET, key, str(target))
    if target.stat().st_size != source.stat().st_size:
        raise RuntimeError("boto3 downloaded a different size")
    target.unlink()
    return down[0]


@dataclass(frozen=True)
class CpuMeter:
    """CPU seconds so far of the clew server's and SeaweedFS's process groups and of this
    process (the SDK side), so each transfer's CPU can be split by who spent it."""

    groups: dict[str, int]

    def read(self) -> dict[str, float]:
        found = {name: group_cpu_seconds(group) for name, group in self.groups.items()}
        return found | {"client": time.process_time()}

    def spent(self, before: dict[str, float]) -> dict[str, float]:
        return {name: value - before[name] for name, value in self.read().items()}


def clew_upload(
    client: clew.Client, source: Path, meter: CpuMeter
) -> tuple[float, str, dict[str, float]]:
    """(seconds, digest, CPU s) of ``run.log_artifact``: hashed, sent through the server."""
    run = client.start_run(experiment="bench", name="artifacts", capture_code=False)
    before = meter.read()
    with stopwatch() as up:
        record = run.log_artifact(source, name="weights")
    spent = meter.spent(before)
    run.end()
    return up[0], record.digest, spent


def clew_download(
    client: clew.Client, digest: str, source: Path, directory: Path, meter: CpuMeter
) -> tuple[float, dict[str, float]]:
    """(seconds, CPU s) to export the blob (what ``export_artifact`` does once it has
    resolved the ref), hashed before the file appears, checked by size."""
    target = directory / "clew-download.bin"
    before = meter.read()
    with stopwatch() as down:
        client.store.blobs.export_file(digest, target)
    spent = meter.spent(before)
    if target.stat().st_size != source.stat().st_size:
        raise RuntimeError("clew exported a different size")
    target.unlink()
    return down[0], spent


def cpu_note(spent: list[dict[str, float]], mib: int) -> str:
    """Median CPU seconds per 128 MiB of each side, over the rounds."""
    per = {name: statistics.median(s[name] for s in spent) * 128 / mib for name in spent[0]}
    return "CPU-s per 128 MiB: " + ", ".join(f"{name} {value:.2f}" for name, value in per.items())


# ---------------------------------------------------------------- main


def alias_results(directory: Path, workers: int, clients: int, seconds: float) -> list[Result]:
    with mlflow_server(directory / "mlflow-alias", workers) as server:
        theirs = mlflow_alias(server, clients, seconds)
    with clew_server(directory / "clew-alias", workers) as server:
        ours = clew_alias(server, clients, seconds, directory)
    shape = f"{clients} client processes x {seconds:g} s, --workers {workers} on both"
    return [
        Result(
            "server",
            "alias resolution over HTTP",
            "req/s",
            True,
            ours.requests_per_s,
            theirs.requests_per_s,
            "MLflow server",
            target_ratio=TARGET_ALIAS,
            note=f"{shape}; {ours.requests:,} vs {theirs.requests:,} requests; server CPU "
            f"per request {ours.server_cpu_ms:.2f} ms vs {theirs.server_cpu_ms:.2f} ms",
        ),
        Result(
            "server",
            "alias resolution p50",
            "ms",
            False,
            ours.p50_ms,
            theirs.p50_ms,
            "MLflow server",
        ),
        Result(
            "server",
            "alias resolution p99",
            "ms",
            False,
            ours.p99_ms,
            theirs.p99_ms,
            "MLflow server",
            target_ratio=1.0,
            note="target: p99 no worse than MLflow's while serving 5x the requests",
        ),
    ]


def metric_results(directory: Path, workers: int, points: int, peer_points: int) -> list[Result]:
    with mlflow_server(directory / "mlflow-metrics", workers) as server:
        theirs = mlflow_metrics(server, peer_points)
    with clew_server(directory / "clew-metrics", workers) as server:
        ours = clew_metrics(server, points)
    return [
        Result(
            "server",
            "metric logging over HTTP",
            "points/s",
            True,
            ours,
            theirs,
            "MLflow REST log-batch",
            target_ratio=TARGET_METRICS,
            note=f"clew {points:,} points via run.log_metric (incl. run.end); MLflow "
            f"{peer_points:,} points in log-batch requests of {MLFLOW_BATCH:,}",
        )
    ]


def in_order(steps: list[Callable[[], Any]], forward: bool) -> list[Any]:
    """Each step's result, in the list's order, after running them forwards or backwards."""
    results: list[Any] = [None] * len(steps)
    for index in range(len(steps)) if forward else reversed(range(len(steps))):
        results[index] = steps[index]()
    return results


def artifact_results(directory: Path, workers: int, mib: int, rounds: int) -> list[Result]:
    """Rounds with a fresh random file each (nothing is deduplicated): both uploads, then the
    three downloads (boto3, clew's default path, a second clew server on the same bucket
    prefix started with ``CLEW_PRESIGNED_DOWNLOADS=0``), in reversed order every other round.
    Each side's median is compared, so load from elsewhere hits all alike, and so does the
    cost of position: on this VM the first write into memory no process touched for a while
    costs several times the kernel time of a write into pages just freed, which made
    whichever download came right after an upload look up to twice as slow."""
    raw_up: list[float] = []
    raw_down: list[float] = []
    ours_up: list[tuple[float, dict[str, float]]] = []
    ours_down: list[tuple[float, dict[str, float]]] = []
    relayed: list[tuple[float, dict[str, float]]] = []
    with seaweedfs(directory) as (env, weed_group):
        s3 = _boto3(env)
        artifacts = f"s3://{BUCKET}/clew"
        env = {key: value for key, value in env.items() if key != PRESIGNED_ENV}
        relaying = {**env, PRESIGNED_ENV: "0"}
        with (
            clew_server(directory / "clew-s3", workers, artifacts, env) as server,
            clew_server(directory / "clew-s3-relay", workers, artifacts, relaying) as relay,
        ):
            client = clew.connect(server.url, token=server.headers["Authorization"].split()[1])
            relay_client = clew.Client(relay.url, token=relay.headers["Authorization"].split()[1])
            meter = CpuMeter({"server": server.process.pid, "SeaweedFS": weed_group})
            relay_meter = CpuMeter({"server": relay.process.pid, "SeaweedFS": weed_group})
            for index in range(rounds):
                source = random_file(directory / f"weights-{index}.bin", mib)
                forward = index % 2 == 0
                (raw_seconds, key), (our_seconds, digest, spent) = in_order(
                    [
                        functools.partial(boto3_upload, s3, source),
                        functools.partial(clew_upload, client, source, meter),
                    ],
                    forward,
                )
                raw_up.append(raw_seconds)
                ours_up.append((our_seconds, spent))
                boto3_seconds, default, relay_figures = in_order(
                    [
                        functools.partial(boto3_download, s3, key, source, directory),
                        functools.partial(clew_download, client, digest, source, directory, meter),
                        functools.partial(
                            clew_download, relay_client, digest, source, directory, relay_meter
                        ),
                    ],
                    forward,
                )
                raw_down.append(boto3_seconds)
                ours_down.append(default)
                relayed.append(relay_figures)
                source.unlink()
            client.close()
            relay_client.close()
    note = (
        f"{mib} MiB random file, median of {rounds} rounds (order reversed every other round); "
        "SeaweedFS weed mini on loopback"
    )
    boto3_down_rate = mib / statistics.median(raw_down)
    return [
        Result(
            "server",
            "artifact upload via server to S3",
            "MiB/s",
            True,
            mib / statistics.median(seconds for seconds, _ in ours_up),
            mib / statistics.median(raw_up),
            "boto3 upload_file",
            target_ratio=TARGET_ARTIFACTS,
            note=f"{note}; clew hashes the file, then streams it through the server, which "
            "hashes it while its parts go up as an S3 multipart upload completed only on a "
            f"match; {cpu_note([spent for _, spent in ours_up], mib)}",
        ),
        Result(
            "server",
            "artifact download via server from S3",
            "MiB/s",
            True,
            mib / statistics.median(seconds for seconds, _ in ours_down),
            boto3_down_rate,
            "boto3 download_file",
            target_ratio=TARGET_ARTIFACTS,
            note=f"{note}; default settings: the server checks the token and redirects to a "
            f"presigned S3 URL, then {DOWNLOAD_CONCURRENCY} parallel ranged GETs come straight "
            "from S3, re-hashed in order before the file appears; "
            f"{cpu_note([spent for _, spent in ours_down], mib)}",
        ),
        Result(
            "server",
            f"artifact download relayed by server ({PRESIGNED_ENV}=0)",
            "MiB/s",
            True,
            mib / statistics.median(seconds for seconds, _ in relayed),
            boto3_down_rate,
            "boto3 download_file",
            note=f"{note}; the opt-out for clients that cannot reach the object store: every "
            "byte passes through the server, which shares the 2 cores with SeaweedFS and the "
            f"client (no target: the issue's target holds for the default path); "
            f"{cpu_note([cpu for _, cpu in relayed], mib)}",
        ),
    ]


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument(
        "--workers", type=int, default=1, help="server worker processes, the same for both"
    )
    arguments.add_argument("--clients", type=int, help="load-generator processes (default 4)")
    arguments.add_argument("--seconds", type=float, help="alias load duration (default 10)")
    arguments.add_argument("--points", type=int, help="clew metric points (default 1,000,000)")
    arguments.add_argument(
        "--peer-points", type=int, help="MLflow log-batch points (default 20,000; it is slow)"
    )
    arguments.add_argument("--mib", type=int, help="artifact size in MiB (default 256)")
    arguments.add_argument("--rounds", type=int, help="artifact rounds (default 5, quick 3)")
    arguments.add_argument(
        "--only", help="comma-separated parts: alias, metrics, artifacts (default all)"
    )
    options = arguments.parse_args()
    quick = options.quick
    clients = options.clients or 4
    seconds = options.seconds or (3.0 if quick else 10.0)
    points = options.points or (200_000 if quick else 1_000_000)
    mib = options.mib or (64 if quick else 256)
    rounds = options.rounds or (3 if quick else 5)
    peer_points = options.peer_points or (5_000 if quick else 20_000)
    parts = set((options.only or "alias,metrics,artifacts").split(","))
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="clew-bench-server-") as temp:
        directory = Path(temp)
        if "alias" in parts:
            results += alias_results(directory, options.workers, clients, seconds)
        if "metrics" in parts:
            results += metric_results(directory, options.workers, points, peer_points)
        if "artifacts" in parts:
            results += artifact_results(directory, options.workers, mib, rounds)
    finish("clew server vs MLflow server and raw S3 (loopback)", results, options.json)


if __name__ == "__main__":
    main()
