"""Concurrent writers on PostgreSQL, from separate processes that start at the same instant.

The processes are forked from the test process (which already imported clew) and each opens
its own store, so they share nothing but the database server.
"""

from __future__ import annotations

import itertools
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import clew
from clew.service import audit
from clew.service.registry import RegistryService
from clew.store.location import open_store

pytestmark = pytest.mark.postgres
WRITERS = 16


def _run_together(target: Any, args: tuple[Any, ...]) -> list[Any]:
    """Start WRITERS forked processes behind one barrier; return what each one reported."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WRITERS)
    results = context.Queue()
    workers = [
        context.Process(target=_report, args=(target, (*args, index), barrier, results))
        for index in range(WRITERS)
    ]
    for worker in workers:
        worker.start()
    reported = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * WRITERS
    failures = [item for item in reported if isinstance(item, str) and item.startswith("error")]
    assert not failures, failures
    return reported


def _report(target: Any, args: tuple[Any, ...], barrier: Any, results: Any) -> None:
    try:
        results.put(target(barrier, *args))
    except Exception as error:
        results.put(f"error: {type(error).__name__}: {error}")


def _register(barrier: Any, url: str, blobs: str, source: str, index: int) -> int:
    store = open_store(url, artifacts=blobs)
    service = RegistryService(store)
    barrier.wait()
    version = service.register("churn", source, f"user{index}").version
    store.close()
    return version


def _log_runs(barrier: Any, url: str, blobs: str, index: int) -> int:
    client = clew.Client(url, blobs)
    barrier.wait()
    for step in range(5):
        with client.start_run(experiment=f"team-{index % 3}", name=f"w{index}-{step}") as run:
            run.log_params({"worker": index, "step": step})
    client.close()
    return index


@pytest.fixture
def pg_client(postgres_url: str, tmp_path: Path) -> clew.Client:
    return clew.connect(postgres_url, artifacts=str(tmp_path / "blobs"))


def test_sixteen_concurrent_registrations_get_unique_gapless_versions(
    pg_client: clew.Client, postgres_url: str, tmp_path: Path
) -> None:
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(features, labels)
    with pg_client.start_run(experiment="churn") as run:
        artifact = run.log_model(model, name="churn-lr")
    versions = _run_together(
        _register, (postgres_url, str(tmp_path / "blobs"), f"artifact:{artifact.id}")
    )
    assert sorted(versions) == list(range(1, WRITERS + 1))
    stored = RegistryService(pg_client.store).versions("churn")
    assert sorted(version.version for version in stored) == list(range(1, WRITERS + 1))
    assert {version.created_by for version in stored} == {f"user{i}" for i in range(WRITERS)}
    assert audit.verify_chain(pg_client.store)[1] is None
    registrations = [e for e in audit.entries(pg_client.store) if e.action == "model.register"]
    assert len(registrations) == WRITERS


def test_audit_chain_stays_linear_under_concurrent_writers(
    pg_client: clew.Client, postgres_url: str, tmp_path: Path
) -> None:
    _run_together(_log_runs, (postgres_url, str(tmp_path / "blobs")))
    entries = audit.entries(pg_client.store, newest_first=False)
    assert [entry.seq for entry in entries] == list(range(1, len(entries) + 1))
    assert all(entry.prev_hash == before.hash for before, entry in itertools.pairwise(entries))
    checked, problem = audit.verify_chain(pg_client.store)
    assert problem is None
    assert checked == len(entries) >= WRITERS * 5
    assert len(pg_client.search_runs(max_results=1000)) == WRITERS * 5
