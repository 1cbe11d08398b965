"""Validation findings (SR 11-7): recorded by validators against a version, tracked to closure.

Who may do what follows the approvals: recording a finding, changing its severity, remediation,
owner or due date, accepting, closing or reopening it needs the policy's approver roles (the
validators). The finding's owner may also mark it ``remediated`` (the developer's claim, which a
validator then closes). Whoever registered the version may not accept or close a finding on it
(separation of duties). Every write images the row in the audit chain with an audit entry that
carries the note saying why. An unresolved high finding blocks promotion
(``promotion.findings_block``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import findings as rules
from clew.domain import ids
from clew.domain.findings import Finding
from clew.errors import InvalidInputError, NotFoundError, PolicyError
from clew.service import audit, policy, record_check, registry, signed_heads
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

FINDINGS = schema.validation_findings
MAX_LIST = 1000
_COLUMNS = (*(column for column in FINDINGS.columns), schema.models.c.name.label("model"))


class FindingService:
    def __init__(self, store: Store) -> None:
        self.store = store

    @signed_heads.checkpointed(decision=True)
    def add(
        self,
        ref: str,
        actor: str,
        *,
        severity: str,
        description: str,
        remediation: str = "",
        owner: str | None = None,
        due: str | None = None,
    ) -> Finding:
        """Record a finding against the version ``ref`` names; ``owner`` (who must remediate)
        defaults to the model's owner."""
        rules.check_severity(severity)
        text = rules.check_text(description, "description", required=True)
        fix = rules.check_text(remediation, "required remediation", required=False)
        due_ms = rules.parse_due(due)
        with self.store.db.write() as connection:
            version = registry.resolve_version(connection, registry.parse_model_ref(ref))
            model = registry.get_model_row(connection, model_id=version.model_id)
            _require_validator(connection, actor, f"record a finding on {version.ref}", model.name)
            time = now_ms()
            row = {
                "id": ids.new_id(),
                "model_id": model.id,
                "version": version.version,
                "severity": severity,
                "description": text,
                "remediation": fix,
                "owner": _owner(owner, model.owner),
                "due_ms": due_ms,
                "status": rules.OPEN,
                "note": "",
                "created_ms": time,
                "created_by": actor,
                "updated_ms": time,
                "updated_by": actor,
            }
            connection.execute(FINDINGS.insert().values(**row))
            audit.stage(connection, FINDINGS, row)
            audit.append(connection, actor, "finding.add", version.ref, row)
            return _finding(row, model.name)

    @signed_heads.checkpointed(decision=True)
    def update(
        self,
        finding_id: str,
        actor: str,
        note: str,
        *,
        status: str | None = None,
        severity: str | None = None,
        remediation: str | None = None,
        owner: str | None = None,
        due: str | None = None,
    ) -> Finding:
        """Change a finding's status or details, saying why in ``note``."""
        why = rules.check_text(note, "note saying why", required=True)
        changes = _changes(status, severity, remediation, owner, due)
        with self.store.db.write() as connection:
            found = _get(connection, finding_id)
            _require_may_change(connection, found, actor, changes)
            updated = replace(found, **changes, note=why, updated_ms=now_ms(), updated_by=actor)
            row = _row(updated)
            connection.execute(FINDINGS.update().where(FINDINGS.c.id == found.id).values(**row))
            audit.stage_stored(connection, FINDINGS, {"id": found.id})
            audit.append(
                connection, actor, "finding.update", found.ref, {"before": _row(found), **row}
            )
            return updated

    def get(self, finding_id: str) -> Finding:
        with self.store.db.read() as connection:
            return _get(connection, finding_id)

    def list_findings(
        self,
        model: str | None = None,
        *,
        version: int | None = None,
        status: str | None = None,
        limit: int = MAX_LIST,
    ) -> list[Finding]:
        """Findings, newest first: of ``model`` (and ``version``), with ``status`` (or
        ``unresolved``: open or remediated)."""
        if status is not None and status != "unresolved":
            rules.check_status(status)
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInputError(f"list 1 to {MAX_LIST} findings at a time.")
        query = _query().order_by(FINDINGS.c.created_ms.desc(), FINDINGS.c.id.desc()).limit(limit)
        with self.store.db.read() as connection:
            if model is not None:
                query = query.where(
                    FINDINGS.c.model_id == registry.get_model_row(connection, name=model).id
                )
            if version is not None:
                query = query.where(FINDINGS.c.version == version)
            if status == "unresolved":
                query = query.where(FINDINGS.c.status.in_(rules.UNRESOLVED))
            elif status is not None:
                query = query.where(FINDINGS.c.status == status)
            return _vouched(connection, [_finding(r._mapping) for r in connection.execute(query)])


def unresolved(connection: Connection, model_id: str, version: int | None = None) -> list[Finding]:
    """The model's (or one version's) open and remediated findings, vouched for by the chain."""
    query = _query().where(FINDINGS.c.model_id == model_id, FINDINGS.c.status.in_(rules.UNRESOLVED))
    if version is not None:
        query = query.where(FINDINGS.c.version == version)
    found = [_finding(row._mapping) for row in connection.execute(query.order_by(FINDINGS.c.id))]
    return _vouched(connection, found)


def _vouched(connection: Connection, found: list[Finding]) -> list[Finding]:
    record_check.require_vouched(
        connection, FINDINGS.name, [{"id": f.id} for f in found], "the validation findings"
    )
    return found


def _query() -> Any:
    return select(*_COLUMNS).join(schema.models, schema.models.c.id == FINDINGS.c.model_id)


def _get(connection: Connection, finding_id: str) -> Finding:
    row = connection.execute(_query().where(FINDINGS.c.id == finding_id)).first()
    if row is None:
        raise NotFoundError(
            f"no finding {finding_id!r}; list them with `clew findings list MODEL`."
        )
    return _vouched(connection, [_finding(row._mapping)])[0]


def _finding(row: Any, model: str | None = None) -> Finding:
    data = {key: row[key] for key in Finding.__dataclass_fields__ if key != "model"}
    return Finding(model=model or row["model"], **data)


def _row(finding: Finding) -> dict[str, Any]:
    columns = {column.name for column in FINDINGS.columns}
    values = {key: getattr(finding, key) for key in columns if key != "model_id"}
    return values


def _changes(
    status: str | None,
    severity: str | None,
    remediation: str | None,
    owner: str | None,
    due: str | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if status is not None:
        changes["status"] = rules.check_status(status)
    if severity is not None:
        changes["severity"] = rules.check_severity(severity)
    if remediation is not None:
        changes["remediation"] = rules.check_text(
            remediation, "required remediation", required=False
        )
    if owner is not None:
        changes["owner"] = _owner(owner, "")
    if due is not None:
        changes["due_ms"] = rules.parse_due(due)
    if not changes:
        raise InvalidInputError(
            "nothing to change; pass a status, severity, remediation, owner or due date."
        )
    return changes


def _owner(owner: str | None, default: str) -> str:
    if owner is None:
        return default
    if not isinstance(owner, str) or not owner.strip() or len(owner) > 200:
        raise InvalidInputError("a finding's owner must be a user name of 1 to 200 characters.")
    return owner.strip()


def _require_validator(connection: Connection, actor: str, action: str, model: str) -> None:
    rules_in_force = policy.current(connection).rules
    policy.require_member(
        connection, rules_in_force, actor, rules_in_force.approver_roles, action, model
    )


def _require_may_change(
    connection: Connection, found: Finding, actor: str, changes: dict[str, Any]
) -> None:
    """The owner may mark a finding remediated; everything else is a validator's to change."""
    remediated = set(changes) == {"status"} and changes["status"] == rules.REMEDIATED
    if remediated and actor == found.owner:
        return
    _require_validator(connection, actor, f"change finding {found.id}", found.model)
    if changes.get("status") in rules.VALIDATOR_STATUSES:
        version = registry.get_version_row(connection, found.model, found.version)
        if actor == version.created_by:
            raise PolicyError(
                f"{actor!r} registered {found.ref} and may not mark a finding on it "
                f"{changes['status']} (separation of duties); ask another validator."
            )


def blocking(connection: Connection, model_id: str, version: int) -> list[Finding]:
    """The version's unresolved high-severity findings (they block promotion)."""
    return [f for f in unresolved(connection, model_id, version) if f.blocks_promotion]


def counts(connection: Connection, model_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per model id: (unresolved findings, unresolved high findings) over all its versions."""
    query = _query().where(
        FINDINGS.c.model_id.in_(list(model_ids)), FINDINGS.c.status.in_(rules.UNRESOLVED)
    )
    totals: dict[str, tuple[int, int]] = {}
    for row in connection.execute(query):
        count, high = totals.get(row.model_id, (0, 0))
        totals[row.model_id] = (count + 1, high + (row.severity == rules.BLOCKING_SEVERITY))
    return totals
