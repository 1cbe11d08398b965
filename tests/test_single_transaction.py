"""``Database.single_transaction``: the server's idempotent requests commit all or nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

import clew
from clew.store import schema


class Interrupted(Exception):
    """Stands in for a process dying half-way through a request."""


def _runs(client: clew.Client) -> int:
    with client.store.db.read() as connection:
        return connection.execute(select(func.count()).select_from(schema.runs)).scalar_one()


def test_writes_inside_commit_together_or_not_at_all(client: clew.Client) -> None:
    db = client.store.db
    with pytest.raises(Interrupted), db.single_transaction():
        client.start_run(experiment="e", name="half-done", capture_code=False).end()
        assert _runs(client) == 1  # reads inside see the transaction's own writes
        raise Interrupted
    assert _runs(client) == 0

    with db.single_transaction():
        client.start_run(experiment="e", name="whole", capture_code=False).end()
    assert _runs(client) == 1


def test_a_failed_inner_write_rolls_back_alone(client: clew.Client) -> None:
    db = client.store.db
    with db.single_transaction():
        client.start_run(experiment="e", name="kept", capture_code=False).end()
        with pytest.raises(Interrupted), db.write() as connection:
            connection.execute(schema.store_info.insert().values(key="probe", value="x"))
            raise Interrupted
    with db.read() as connection:
        assert db.info("probe", connection) is None
    assert _runs(client) == 1
