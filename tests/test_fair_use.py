"""Fair use on PostgreSQL: one caller's heavy searches cannot starve everyone else.

The store is a throwaway PostgreSQL database with a few 10k runs inserted in bulk by SQL (going
through the services would take minutes per test); it is not audited afterwards.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from server_fixtures import RunningServer, serve
from sqlalchemy import select, text

import clew
from clew.errors import QueryTimeoutError, StoreBusyError
from clew.service.runs import search_runs
from clew.store.location import Store, open_store

SEEDED_RUNS = 20_000
HEAVY = " or ".join(f"params.model ilike '%zz{i}%'" for i in range(99))

pytestmark = pytest.mark.backend_independent


@pytest.fixture
def seeded(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A PostgreSQL store with one real run and ``SEEDED_RUNS`` more in its experiment."""
    monkeypatch.setenv("CLEW_HOME", str(tmp_path / "fair-home"))
    monkeypatch.setenv("CLEW_PG_SEARCH_TIMEOUT_MS", "300")
    client = clew.connect(postgres_url, artifacts=str(tmp_path / "blobs"))
    with client.start_run(experiment="fair", name="real", capture_code=False) as run:
        run.log_params({"model": "rf"})
    client.close()
    store = open_store(postgres_url, artifacts=str(tmp_path / "blobs"))
    with store.db.write() as connection:
        experiment = connection.execute(
            text("SELECT experiment_id, start_ms FROM runs WHERE id = :id"), {"id": run.id}
        ).one()
        values = {"experiment": experiment[0], "start": experiment[1], "n": SEEDED_RUNS}
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
    yield store
    store.close()


def _active_queries(url: str) -> list[str]:
    """Queries other backends are running on this database now."""
    plain = url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_search_past_its_timeout_is_cancelled_and_its_connection_returned(
    seeded: Store, postgres_url: str
) -> None:
    with pytest.raises(QueryTimeoutError) as raised:
        search_runs(seeded, HEAVY, None, 1000)
    message = str(raised.value)
    assert "0.3 s" in message and "narrow" in message and message.endswith("."), message
    assert _active_queries(postgres_url) == []
    assert seeded.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert [r.name for r in search_runs(seeded, "params.model = 'rf'", None, 1)] == ["real"]


def test_searches_are_not_compiled_by_the_jit_which_no_timeout_interrupts(seeded: Store) -> None:
    """PostgreSQL's JIT compiled the heavy search's 99 expressions for ~8 s before running it,
    and a statement timeout does not interrupt that compilation: a 0.3 s search limit was
    honoured only after ~8.7 s. clew's statements are short, so its sessions turn the JIT off."""
    with seeded.db.read() as connection:
        assert connection.exec_driver_sql("SHOW jit").scalar() == "off"


def test_an_exhausted_connection_pool_is_busy_not_a_failure(
    seeded: Store, monkeypatch: pytest.MonkeyPatch, postgres_url: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLEW_PG_POOL_TIMEOUT_S", "1")
    store = open_store(postgres_url, artifacts=str(tmp_path / "blobs"))
    pool = store.db.engine.pool
    held = [store.db.engine.connect() for _ in range(pool.size() + pool._max_overflow)]  # type: ignore[attr-defined]
    try:
        with pytest.raises(StoreBusyError) as raised, store.db.read() as connection:
            connection.execute(select(1))
        assert "connection" in str(raised.value) and "retry" in str(raised.value)
    finally:
        for connection in held:
            connection.close()
        store.close()


@pytest.fixture
def server(seeded: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    monkeypatch.setenv("CLEW_PG_SEARCH_TIMEOUT_MS", "2000")
    monkeypatch.setenv("CLEW_SEARCHES_PER_USER", "2")
    yield from serve(seeded, seeded.home)


def test_one_users_flood_leaves_other_users_answered(
    server: RunningServer, postgres_url: str
) -> None:
    flooder = server.user("mallory", "viewer")
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()

    def flood() -> None:
        with server.http(flooder) as http:
            for _ in range(3):
                body = {"filter": HEAVY, "max_results": 50_000}
                response = http.post("/api/v1/runs/search", json=body)
                statuses[response.status_code] += 1
                if response.status_code == 429:
                    retry_after.add(response.headers.get("Retry-After", ""))

    threads = [threading.Thread(target=flood) for _ in range(10)]
    for thread in threads:
        thread.start()
    answers = []
    with server.http(server.user("carol", "viewer")) as http:
        for i in range(5):
            answers.append(http.get("/api/v1/runs/seed00000001").status_code)
            light = {"filter": f"run.name = 'seed-{i + 1}'", "experiments": ["fair"]}
            answers.append(http.post("/api/v1/runs/search", json=light).status_code)
    for thread in threads:
        thread.join()
    assert answers == [200] * 10
    assert set(statuses) <= {200, 400, 429, 503}, statuses
    assert statuses[429] > 0 and retry_after == {"1"}, statuses
    assert sum(statuses.values()) == 30, f"some flood requests got no answer: {statuses}"
    assert _active_queries(postgres_url) == []
