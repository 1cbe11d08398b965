"""Fair use: another user's latency while one user floods ``clew server`` with heavy searches.

A real ``clew server`` subprocess on the PostgreSQL database given by ``--uri`` (a fresh, empty
one: the benchmark inserts ``--runs`` runs into it by SQL). ``carol`` sends a read of one run and
a light search back to back for ``--seconds``, first alone, then while ``mallory`` runs
``--flooders`` threads of 99-term ``ilike`` searches with ``max_results`` 50,000. Printed: carol's
requests, p50 and p99 in both phases and their ratio (issue 14's target: p99 within 2x), the
flood's status codes, the server's CPU seconds per phase, and how long PostgreSQL took to go
idle after the flood.

    uv run --frozen python benchmarks/bench_fair_use.py --uri postgresql+psycopg://u@host/db
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
from bench_server import BIN, free_port, running
from report import percentile
from sqlalchemy import text

import clew
from clew.service import accounts
from clew.store.location import Store, open_store

HEAVY = " or ".join(f"params.model ilike '%zz{i}%'" for i in range(99))


def seed(uri: str, artifacts: str, runs: int) -> str:
    """One real run in experiment ``fair`` and ``runs`` more inserted beside it by SQL."""
    client = clew.connect(uri, artifacts=artifacts)
    with client.start_run(experiment="fair", name="real", capture_code=False) as run:
        run.log_params({"model": "rf"})
    client.close()
    store = open_store(uri, artifacts=artifacts)
    with store.db.write() as connection:
        experiment, start = connection.execute(
            text("SELECT experiment_id, start_ms FROM runs WHERE id = :id"), {"id": run.id}
        ).one()
        values = {"experiment": experiment, "start": start, "n": runs}
        connection.execute(
            text(
                "INSERT INTO runs (id, experiment_id, name, kind, status, user_name, start_ms, "
                "properties) SELECT 'seed' || lpad(g::text, 8, '0'), :experiment, "
                "'seed-' || g, 'training', 'FINISHED', 'bob', :start - g, '{}' "
                "FROM generate_series(1, :n) g"
            ),
            values,
        )
        connection.execute(
            text(
                "INSERT INTO params (run_id, key, value) SELECT 'seed' || lpad(g::text, 8, '0'), "
                "'model', 'rf' FROM generate_series(1, :n) g"
            ),
            values,
        )
        connection.execute(text("ANALYZE"))
    store.close()
    return run.id


def token(store: Store, name: str) -> str:
    accounts.create_user(store, name, "viewer", actor="bench")
    return accounts.create_token(store, name, actor="bench").secret


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the server process and its children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def other_user(url: str, secret: str, run_id: str, seconds: float) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {secret}"}
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            started = time.perf_counter()
            response = http.get(f"/api/v1/runs/{run_id}")
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1
            light = {"filter": f"run.name = 'seed-{i}'", "experiments": ["fair"]}
            started = time.perf_counter()
            response = http.post("/api/v1/runs/search", json=light)
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1
    return latencies, statuses


def flood(url: str, secret: str, stop: threading.Event, statuses: Counter[int]) -> None:
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        while not stop.is_set():
            body = {"filter": HEAVY, "max_results": 50_000}
            statuses[http.post("/api/v1/runs/search", json=body).status_code] += 1


def seconds_until_idle(uri: str, limit: float = 120) -> float:
    started = time.monotonic()
    with psycopg.connect(uri.replace("+psycopg", ""), autocommit=True) as connection:
        while time.monotonic() - started < limit:
            active = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND pid <> pg_backend_pid()"
            ).fetchone()
            if active is not None and active[0] == 0:
                break
            time.sleep(0.2)
    return time.monotonic() - started


def report(phase: str, latencies: list[float], statuses: Counter, cpu: float) -> float:
    p99 = percentile(latencies, 0.99)
    print(
        f"{phase:<8} carol: {len(latencies):5d} requests, p50 "
        f"{percentile(latencies, 0.5) * 1000:8.1f} ms, p99 {p99 * 1000:8.1f} ms, statuses "
        f"{dict(statuses)}; server CPU {cpu:.1f} s"
    )
    return p99


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--uri", required=True, help="an empty PostgreSQL database")
    arguments.add_argument("--runs", type=int, default=30_000)
    arguments.add_argument("--flooders", type=int, default=12)
    arguments.add_argument("--seconds", type=float, default=20)
    options = arguments.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="clew-fair-"))
    artifacts = str(directory / "blobs")
    os.environ["CLEW_HOME"] = str(directory / "home")
    run_id = seed(options.uri, artifacts, options.runs)
    store = open_store(options.uri, artifacts=artifacts)
    carol, mallory = token(store, "carol"), token(store, "mallory")
    store.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "clew"), "server", "--uri", options.uri, "--port", str(port)]
    command += ["--artifacts", artifacts]
    env = {"CLEW_UI_SECRET": "bench-fair-use"}
    with running(command, url, "/api/v1/health", directory / "server.log", env) as process:
        before = cpu_seconds(process.pid)
        alone, alone_statuses = other_user(url, carol, run_id, options.seconds)
        middle = cpu_seconds(process.pid)
        stop, flood_statuses = threading.Event(), Counter[int]()
        threads = [
            threading.Thread(target=flood, args=(url, mallory, stop, flood_statuses))
            for _ in range(options.flooders)
        ]
        for thread in threads:
            thread.start()
        flooded, flooded_statuses = other_user(url, carol, run_id, options.seconds)
        stop.set()
        for thread in threads:
            thread.join()
        idle = seconds_until_idle(options.uri)
        after = cpu_seconds(process.pid)
    print(f"{options.runs:,} runs; {options.flooders} flooding threads; {options.seconds} s each")
    base = report("alone", alone, alone_statuses, middle - before)
    worst = report("flooded", flooded, flooded_statuses, after - middle)
    print(f"flood statuses {dict(flood_statuses)}; PostgreSQL idle {idle:.1f} s after the flood")
    print(f"carol's p99 flooded / alone: {worst / base:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
