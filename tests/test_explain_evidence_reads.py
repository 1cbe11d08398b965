"""Approval and promotion read report JSON from the blob store before their write transaction:
on S3 a blob read is a network call, which must not hold the store's write lock.

Each read of the real blob store is observed (the real read runs) by a probe that asks SQLite,
from a second connection, for the write lock: a read inside clew's ``BEGIN IMMEDIATE``
transaction finds it taken for as long as the probe waits (the store's WAL checkpointer holds it
for milliseconds only). The transaction still finds the report rows again, so a report recorded
after the documents were read is checked too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from server_fixtures import AsUser
from test_explain import POLICY, _set_policy, frame
from test_explain import forest as forest  # the fixture

import clew
from clew.store.location import Store

LOCK_WAIT_S = 2.0

pytestmark = [pytest.mark.embedded_only, pytest.mark.sqlite_only]  # probes the SQLite file


@dataclass
class Probe:
    """Records, for each blob read, whether another connection could take the write lock."""

    database: str
    reads: list[tuple[str, bool]] = field(default_factory=list)
    then: Callable[[], None] | None = None

    def write_lock_held(self) -> bool:
        """Whether a write transaction holds the lock for the whole wait. The store's WAL
        checkpointer takes the lock for milliseconds (a RESTART checkpoint) and lets go; a
        transaction of the thread that is reading cannot let go before this read returns."""
        other = sqlite3.connect(self.database, timeout=LOCK_WAIT_S, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            other.close()

    def around(self, read: Callable[[str], bytes]) -> Callable[[str], bytes]:
        def observed(digest: str) -> bytes:
            self.reads.append((digest, self.write_lock_held()))
            if self.then is not None:
                action, self.then = self.then, None
                action()
            return read(digest)

        return observed


def _probe(store: Store, monkeypatch: pytest.MonkeyPatch) -> Probe:
    database = store.db.engine.url.database
    assert database
    probe = Probe(database)
    monkeypatch.setattr(store.blobs, "read_bytes", probe.around(store.blobs.read_bytes))
    return probe


def test_approval_and_promotion_read_reports_outside_the_write_lock(
    client: clew.Client, forest: str, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(client.store, Store)
    _set_policy(as_user, POLICY % "0.5")
    alice = as_user("alice")
    alice.bias_report(forest, frame(seed=5), target="target", attributes=["age_band", "sex"])
    alice.explain(forest, frame(seed=5))
    probe = _probe(client.store, monkeypatch)
    assert as_user("bob").approve(forest, "bias and explanation reviewed").kind == "approved"
    approval_reads = list(probe.reads)
    assert len(approval_reads) >= 2 and not any(held for _, held in approval_reads)
    as_user("dana", role="admin").promote(forest, "production")
    promotion_reads = probe.reads[len(approval_reads) :]
    assert len(promotion_reads) >= 2 and not any(held for _, held in promotion_reads)


def test_a_report_recorded_after_the_documents_were_read_is_checked_in_the_transaction(
    client: clew.Client, forest: str, as_user: AsUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(client.store, Store)
    _set_policy(as_user, POLICY % "0.5")
    alice = as_user("alice")
    alice.bias_report(forest, frame(seed=5), target="target", attributes=["age_band", "sex"])
    probe = _probe(client.store, monkeypatch)
    # While the approval reads the one report there is, the missing explanation is recorded.
    probe.then = lambda: alice.explain(forest, frame(seed=5), record=True)
    bob = as_user("bob")
    assert bob.approve(forest, "explanation recorded meanwhile").kind == "approved"
    late = [digest for digest, held in probe.reads if held]
    assert len(late) == 1  # only the late report was read under the lock, once
    assert late[0] in {r["digest"] for r in client.version_reports(forest)}
