"""The PostgreSQL metadata backend on a real, throwaway PostgreSQL cluster."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import PostgresServer, free_port
from sqlalchemy import inspect

import clew
from clew.errors import InvalidInputError, StoreUnavailableError
from clew.service.audit import verify_chain
from clew.store.location import open_store
from clew.store.metadata import SCHEMA_HEAD, Database
from clew.store.schema import metadata

pytestmark = pytest.mark.postgres


def _fresh_database(server: PostgresServer) -> str:
    """An empty database (not cloned from the migrated template)."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    server.execute(f"CREATE DATABASE {name}")
    return server.url(name)


def test_migrations_create_every_table_on_an_empty_database(
    postgres_server: PostgresServer,
) -> None:
    url = _fresh_database(postgres_server)
    database = Database(url)
    try:
        assert database.dialect == "postgresql"
        assert database.schema_revision() == SCHEMA_HEAD
        with database.read() as connection:
            tables = set(inspect(connection).get_table_names())
        assert set(metadata.tables) <= tables
    finally:
        database.close()
    reopened = Database(url)  # already at head: opening again changes nothing
    assert reopened.schema_revision() == SCHEMA_HEAD
    reopened.close()


def _open_after(barrier: Any, url: str, revisions: Any) -> None:
    barrier.wait()
    database = Database(url)
    revisions.put(database.schema_revision())
    database.close()


def test_replicas_opening_an_empty_database_together_migrate_it_once(
    postgres_server: PostgresServer,
) -> None:
    url = _fresh_database(postgres_server)
    context = multiprocessing.get_context("fork")
    barrier, revisions = context.Barrier(4), context.Queue()
    replicas = [
        context.Process(target=_open_after, args=(barrier, url, revisions)) for _ in range(4)
    ]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join(timeout=120)
    assert [replica.exitcode for replica in replicas] == [0, 0, 0, 0]
    assert [revisions.get(timeout=10) for _ in replicas] == [SCHEMA_HEAD] * 4


def test_sdk_round_trip_on_postgres_and_s3(postgres_url: str, s3_artifacts: str, tmp_path) -> None:
    client = clew.connect(postgres_url, artifacts=s3_artifacts)
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n3,4\n")
    with client.start_run(experiment="pg") as run:
        run.log_params({"lr": 0.1, "depth": 3})
        run.log_metric("loss", 0.5, step=1)
        run.log_metric("loss", 0.25, step=2)
        dataset = run.log_input(data, name="train")
    assert client.store.db.dialect == "postgresql"
    assert client.store.blobs.read_bytes(dataset.digest) == b"x,y\n1,2\n3,4\n"
    assert client.store.blobs.url == s3_artifacts
    found = client.search_runs(experiments=["pg"])
    assert len(found) == 1
    checked, problem = verify_chain(client.store)
    assert problem is None and checked > 0


def test_plain_postgresql_urls_use_psycopg_and_passwords_never_show(
    postgres_url: str,
) -> None:
    with_password = postgres_url.replace(
        "postgresql+psycopg://postgres@", "postgres://postgres:s3cret@"
    )
    store = open_store(with_password, artifacts=None)
    try:
        assert store.db.engine.dialect.driver == "psycopg"
        assert "s3cret" not in store.uri
        assert "***" in store.uri
    finally:
        store.close()


def test_unsupported_database_scheme_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(InvalidInputError, match=r"mysql:// is not a clew store; use .*postgresql"):
        open_store("mysql://root@127.0.0.1/clew")


def test_server_that_is_down_gives_a_clear_error() -> None:
    url = f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{free_port()}/clew"
    with pytest.raises(StoreUnavailableError, match="unavailable") as raised:
        Database(url)
    assert "s3cret" not in str(raised.value)


def test_restart_under_a_client_fails_clearly_then_recovers_without_reopening(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    own_postgres.execute("CREATE DATABASE clew")
    client = clew.connect(own_postgres.url("clew"), artifacts=str(tmp_path / "blobs"))
    with client.start_run(experiment="before") as run:
        run.log_param("phase", "before")
    own_postgres.stop()
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        client.search_runs(experiments=["before"])
    with pytest.raises(StoreUnavailableError), client.start_run(experiment="during"):
        pass
    own_postgres.start()
    with client.start_run(experiment="after") as run:
        run.log_param("phase", "after")
    assert len(client.search_runs(experiments=["before"])) == 1
    assert len(client.search_runs(experiments=["after"])) == 1
    assert verify_chain(client.store)[1] is None
