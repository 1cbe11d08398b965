"""One-statement reads on PostgreSQL run in autocommit, and leave no trace on the pool.

``Database.read_statement`` saves a hot lookup's BEGIN and ROLLBACK round trips (the token
check on every request, the registry's resolve). The pooled connection must come back as a
write expects it: out of autocommit, or a later write's statements would each commit alone.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import text

from clew.errors import AuthenticationError
from clew.service import accounts
from clew.store.location import open_store

pytestmark = pytest.mark.postgres


def test_one_statement_read_opens_no_transaction_and_returns_the_connection_as_it_was(
    postgres_url: str, tmp_path: Path
) -> None:
    store = open_store(postgres_url, str(tmp_path / "blobs"), create=True)
    try:
        with store.db.read_statement() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
            driver = connection.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            assert driver.info.transaction_status == TransactionStatus.IDLE
        assert driver.autocommit is False
        with store.db.write() as connection:
            assert connection.connection.driver_connection.autocommit is False
    finally:
        store.close()


def test_token_check_sees_a_revocation_committed_before_it(
    postgres_url: str, tmp_path: Path
) -> None:
    store = open_store(postgres_url, str(tmp_path / "blobs"), create=True)
    try:
        accounts.create_user(store, "ann", "viewer", actor="admin")
        token = accounts.create_token(store, "ann", actor="admin")
        assert accounts.authenticate(store, token.secret).name == "ann"
        accounts.revoke_token(store, token.id, actor="admin")
        with pytest.raises(AuthenticationError, match="was revoked"):
            accounts.authenticate(store, token.secret)
    finally:
        store.close()
