"""Serving deployments: recorded when ``clew serve`` starts and stops, read by time.

"Which version answered endpoint E at time T" is one indexed query over ``deployments``, and
every row it answers from must match the image the audit chain recorded (a deployment is a
governance fact: an auditor asks it about a prediction). Starting a deployment of a rejected
or revoked version is refused here, like loading it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from clew.domain import ids
from clew.domain.deployments import Deployment, DeploymentList, check_endpoint, check_role
from clew.errors import ConflictError, InvalidInputError, NotFoundError
from clew.service import audit, record_check, signed_heads
from clew.service.approvals import ApprovalService
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

MAX_ADDRESS = 200
MAX_HISTORY = 1000
_SELECT = """
SELECT d.id, d.endpoint, d.role, m.name, v.version, d.version_id, v.digest, d.champion_id,
       d.run_id, d.address, d.started_ms, d.started_by, d.stopped_ms, d.stopped_by
FROM deployments d JOIN model_versions v ON v.id = d.version_id JOIN models m ON m.id = v.model_id
"""
# PostgreSQL cannot type a bare ``:endpoint IS NULL``: the cast says it is text.
_OF_ENDPOINT = "(CAST(:endpoint AS VARCHAR(200)) IS NULL OR d.endpoint = :endpoint)"
_ACTIVE_AT = text(
    f"{_SELECT} WHERE {_OF_ENDPOINT} AND d.started_ms <= :at "
    "AND (d.stopped_ms IS NULL OR d.stopped_ms > :at) ORDER BY d.endpoint, d.started_ms, d.id"
)
_HISTORY = text(
    f"{_SELECT} WHERE {_OF_ENDPOINT} ORDER BY d.started_ms DESC, d.id DESC LIMIT :limit"
)
_ONE = text(_SELECT + "WHERE d.id = :id")


class DeploymentService:
    def __init__(self, store: Store) -> None:
        self.store = store

    @signed_heads.checkpointed(decision=False)
    def start(
        self,
        endpoint: str,
        ref: str,
        actor: str,
        *,
        role: str = "champion",
        champion_id: str | None = None,
        address: str = "",
        run_id: str | None = None,
    ) -> Deployment:
        """Record that version ``ref`` starts answering ``endpoint`` now (a shadow names the
        champion deployment it shadows)."""
        check_endpoint(endpoint)
        check_role(role)
        if (role == "shadow") != (champion_id is not None):
            raise InvalidInputError("a shadow deployment names its champion, and only a shadow.")
        if not isinstance(address, str) or len(address) > MAX_ADDRESS:
            raise InvalidInputError(f"address must be text of at most {MAX_ADDRESS} characters.")
        version = ApprovalService(self.store).loadable(ref)
        deployment_id = ids.new_id()
        row = {
            "id": deployment_id,
            "endpoint": endpoint,
            "role": role,
            "version_id": version.id,
            "champion_id": champion_id,
            "run_id": run_id,
            "address": address,
            "started_ms": now_ms(),
            "started_by": actor,
            "stopped_ms": None,
            "stopped_by": None,
        }
        with self.store.db.write() as connection:
            if champion_id is not None:
                _get(connection, champion_id)
            connection.execute(schema.deployments.insert().values(**row))
            audit.stage(connection, schema.deployments, row)
            audit.append(
                connection,
                actor,
                "deployment.start",
                f"endpoint:{endpoint}",
                {"deployment": deployment_id, "version": version.ref, "role": role},
            )
            return _get(connection, deployment_id)

    @signed_heads.checkpointed(decision=False)
    def stop(self, deployment_id: str, actor: str) -> Deployment:
        """Record that the deployment stopped answering now; stopping twice is refused."""
        with self.store.db.write() as connection:
            found = _get(connection, deployment_id)
            if found.stopped_ms is not None:
                raise ConflictError(f"deployment {deployment_id} already stopped; nothing to do.")
            stopped = {"stopped_ms": max(now_ms(), found.started_ms), "stopped_by": actor}
            table = schema.deployments
            connection.execute(table.update().where(table.c.id == deployment_id).values(stopped))
            audit.stage_stored(connection, table, {"id": deployment_id})
            audit.append(
                connection,
                actor,
                "deployment.stop",
                f"endpoint:{found.endpoint}",
                {"deployment": deployment_id, "version": found.ref},
            )
            return _get(connection, deployment_id)

    def at(self, endpoint: str | None, at_ms: int) -> DeploymentList:
        """The deployments answering ``endpoint`` (every endpoint when None) at ``at_ms``."""
        if endpoint is not None:
            check_endpoint(endpoint)
        with self.store.db.read() as connection:
            rows = connection.execute(_ACTIVE_AT, {"endpoint": endpoint, "at": at_ms}).all()
            return _vouched(connection, rows, f"the deployments at {at_ms}")

    def history(self, endpoint: str | None = None, limit: int = 100) -> DeploymentList:
        """DeploymentList newest first (of ``endpoint`` when given)."""
        if endpoint is not None:
            check_endpoint(endpoint)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
            raise InvalidInputError(f"limit must be a whole number from 1 to {MAX_HISTORY}.")
        with self.store.db.read() as connection:
            rows = connection.execute(_HISTORY, {"endpoint": endpoint, "limit": limit}).all()
            return _vouched(connection, rows, "the deployment history")

    def get(self, deployment_id: str) -> Deployment:
        with self.store.db.read() as connection:
            return _get(connection, deployment_id)


def _get(connection: Connection, deployment_id: str) -> Deployment:
    if not isinstance(deployment_id, str) or not ids.is_id(deployment_id):
        raise InvalidInputError(f"{deployment_id!r} is not a deployment id.")
    row = connection.execute(_ONE, {"id": deployment_id}).first()
    if row is None:
        raise NotFoundError(f"deployment {deployment_id} does not exist.")
    return _vouched(connection, [row], f"deployment {deployment_id}")[0]


def _vouched(connection: Connection, rows: Any, what: str) -> DeploymentList:
    """The rows as deployments, once each matches its audited image."""
    record_check.require_vouched(connection, "deployments", [{"id": row[0]} for row in rows], what)
    return DeploymentList(Deployment(*row) for row in rows)
