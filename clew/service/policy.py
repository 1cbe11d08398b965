"""The governance policy: who may approve, separation of duties, what production requires.

A policy is a YAML document stored, versioned and audited in the ``policies`` table; the
newest version is in force. Parsing is strict (an unknown key is an error, not a silently
weaker policy) and happens before anything is written, so a document with a mistake is
refused and the previous policy stays in force. When no policy was ever set,
``DEFAULT_DOCUMENT`` applies: anyone may approve except the version's creator and its
training run's user, and ``production`` needs one approval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import digests
from clew.domain.findings import review_cadence
from clew.domain.policy import MetricRule, Policy, StoredPolicy, default, parse, syntax_error
from clew.service import accounts, audit, record_check, signed_heads
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store


def require_member(
    connection: Connection,
    rules: Policy,
    actor: str,
    roles: tuple[str, ...] | None,
    action: str,
    model: str | None = None,
) -> None:
    """``rules.require_role``, with the actor's account role on ``model`` looked up when the
    role list names an account role the policy does not define itself."""
    account = None
    if roles and any(role not in rules.roles for role in roles):
        account = accounts.account_role(connection, actor, model)
    rules.require_role(actor, roles, action, account)


def current(connection: Connection) -> StoredPolicy:
    """The policy in force: the newest stored version, or the default."""
    table = schema.policies
    row = connection.execute(select(table).order_by(table.c.version.desc()).limit(1)).first()
    if row is None:
        return default()
    record_check.require_vouched(
        connection, "policies", [{"version": row.version}], f"policy version {row.version}"
    )
    return StoredPolicy(
        row.version, row.digest, row.document, row.created_ms, row.created_by, parse(row.document)
    )


class PolicyService:
    def __init__(self, store: Store) -> None:
        self.store = store

    @signed_heads.checkpointed(decision=True)
    def set_policy(self, document: str, actor: str) -> int:
        """Store ``document`` as the next policy version; returns that version number."""
        if not isinstance(document, str):
            raise syntax_error(f"the policy must be YAML text, not {type(document).__name__}")
        parse(document)
        review_cadence(document)
        with self.store.db.write() as connection:
            in_force = current(connection)
            require_member(
                connection, in_force.rules, actor, in_force.rules.admin_roles, "change the policy"
            )
            version = in_force.version + 1
            row = {
                "version": version,
                "document": document,
                "digest": digests.digest_bytes(document.encode()),
                "created_ms": now_ms(),
                "created_by": actor,
            }
            connection.execute(schema.policies.insert().values(**row))
            audit.stage(connection, schema.policies, row)
            audit.append(connection, actor, "policy.set", "policy", row)
            return version

    def get_policy(self) -> StoredPolicy:
        with self.store.db.read() as connection:
            return current(connection)


def metric_failures(rules: Sequence[MetricRule], metrics: Mapping[str, Any]) -> list[str]:
    return [reason for rule in rules if (reason := rule.failure(metrics))]
