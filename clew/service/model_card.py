"""The live model card of one version: everything a validator reads before signing off.

It is assembled from the records on every request (never stored), so it can not drift from
them: the version and its metrics snapshot, the policy's verdict on it (``status_of``, the
same function promotion uses), its decisions and alias moves, the training run with its
data, code and environment, and how many predictions it has made. Verifying the model's
bytes re-reads them, so it is a separate call (``verify_version``) that a page can make after
it has shown everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from clew.domain.records import (
    ArtifactRecord,
    ModelRecord,
    RegistryEvent,
    RunRecord,
    VersionRecord,
)
from clew.service import approvals, bias, policy, promotion, registry
from clew.service.artifacts import ArtifactService, get_artifact_row
from clew.service.runs import read_runs
from clew.store import schema
from clew.store.location import Store

SOURCE_TYPES = ("code", "environment")


@dataclass
class ModelCard:
    model: ModelRecord
    version: VersionRecord
    status: dict[str, Any]
    events: list[RegistryEvent]
    aliases: dict[str, int]
    artifact: ArtifactRecord
    run: RunRecord | None
    inputs: list[ArtifactRecord]
    code: ArtifactRecord | None
    environment: ArtifactRecord | None
    predictions: int
    dropped: int


@dataclass(frozen=True)
class Verification:
    """Whether the stored bytes of a version still match the digest it was registered with."""

    ok: bool
    digest: str
    reason: str


def model_card(store: Store, name: str, version: int) -> ModelCard:
    with store.db.read() as connection:
        found = registry.get_version_row(connection, name, version)
        model = registry.get_model_row(connection, model_id=found.model_id)
        state = approvals.version_state(connection, model, found)
        stored = policy.current(connection)
        status = promotion.status_of(connection, state, stored)
        bias.add_report_gaps(store, connection, state, stored.rules, status)
        events = registry.read_events(connection, model, version=version)
        aliases = registry.current_aliases(connection, model.id)
        artifact = get_artifact_row(connection, found.artifact_id)
        run = next(iter(read_runs(connection, [found.run_id])), None) if found.run_id else None
        predictions, dropped = _capture_counts(connection, found.id)
    inputs: list[ArtifactRecord] = []
    code = environment = None
    if run is not None:
        service = ArtifactService(store)
        linked = service.run_artifacts(run.id)["inputs"]
        inputs = [a for a in linked if a.type not in SOURCE_TYPES]
        code = service.get(run.code_artifact_id) if run.code_artifact_id else None
        if run.environment_artifact_id:
            environment = service.get(run.environment_artifact_id)
    return ModelCard(
        model,
        found,
        status,
        events,
        aliases,
        artifact,
        run,
        inputs,
        code,
        environment,
        predictions,
        dropped,
    )


def _capture_counts(connection: Any, version_id: str) -> tuple[int, int]:
    batches = schema.capture_batches
    row = connection.execute(
        select(
            func.coalesce(func.sum(batches.c.count), 0),
            func.coalesce(func.sum(batches.c.dropped), 0),
        ).where(batches.c.model_version_id == version_id)
    ).one()
    return int(row[0]), int(row[1])


def verify_version(store: Store, name: str, version: int) -> Verification:
    """Re-hash the version's model the way ``trace`` does (manifest, then every file)."""
    with store.db.read() as connection:
        found = registry.get_version_row(connection, name, version)
        artifact = get_artifact_row(connection, found.artifact_id)
    if artifact.digest != found.digest:
        reason = f"{found.ref} records {found.digest} but its artifact is {artifact.digest}"
        return Verification(False, found.digest, reason)
    from clew.service.trace import verify_content  # captures bring pyarrow: only when asked

    verified, reason = verify_content(store, artifact)
    return Verification(verified, found.digest, reason)
