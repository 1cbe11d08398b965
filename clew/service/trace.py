"""``trace``: from one prediction id back along the thread, checking each step as it goes.

prediction (leaf, proof, signature) → model version (every file re-hashed) → approvals and
promotions (their audit entries re-hashed) → training run (code identity and environment
re-derived) → input datasets (re-hashed where clew holds the bytes) and the runs that made
them → data sources. Each step has one of three outcomes, with the reason: ``verified``
(re-hashed, re-derived or signature-checked just now), ``not_checkable`` (clew holds nothing
to check it against: a source recorded by reference, a run without a git commit) or
``failed`` (what was checked differs, naming the digest). A thread is failed only when a step
failed, so an untouched store never cries wolf, and an auditor still sees exactly which links
are proven and which are only recorded.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, or_, select

from clew.domain import digests, records
from clew.domain.audit import AuditEntry
from clew.domain.captures import CapturedPrediction
from clew.domain.records import ArtifactRecord, RegistryEvent, VersionRecord
from clew.domain.trace import FAILED, NOT_CHECKABLE, VERIFIED, Check, Trace, TraceStep
from clew.errors import IntegrityError, NotFoundError
from clew.service import audit, capture_lookup, graph, record_check, registry, user_keys
from clew.service.artifacts import get_artifact_row
from clew.service.runs import read_runs
from clew.store import schema
from clew.store.location import Store

DATA_TYPES = ("dataset", "feature_set", "feature_group", "file", "directory")
MAX_DEPTH = 10
# Types whose bytes clew always stores: missing bytes are a failure, not a reference.
HELD_TYPES = ("model", "dataset", "file", "directory", "environment")


def trace_prediction(store: Store, prediction_id: str) -> Trace:
    prediction = capture_lookup.find_prediction(store, prediction_id)
    steps = [_prediction_step(prediction)]
    with store.db.read() as connection:
        version = _version(connection, prediction.model_version_id)
        artifact = get_artifact_row(connection, version.artifact_id)
        steps.append(_model_step(store, prediction, version, artifact))
        steps.append(_events_step(connection, version))
        if version.run_id:
            steps.append(_run_step(store, connection, version.run_id))
        steps.extend(_data_steps(store, connection, artifact.id))
        steps.append(_records_step(connection, version, artifact.id))
    return Trace(prediction.id, steps)


# --- prediction and model ---------------------------------------------------------------


def _prediction_step(prediction: CapturedPrediction) -> TraceStep:
    return TraceStep(
        "prediction",
        f"{prediction.id} by {prediction.model}/{prediction.version} "
        f"at {records.ms_to_iso(prediction.time_ms)}",
        VERIFIED if prediction.verification.verified else FAILED,
        prediction.verification.reason,
        {
            "id": prediction.id,
            "time": records.ms_to_iso(prediction.time_ms),
            "method": prediction.method,
            "output": prediction.output,
            "inputs": prediction.inputs,
            "inputs_withheld": prediction.inputs_withheld,
            "label": prediction.label if prediction.labelled else None,
            "batch": prediction.batch_id,
            "leaf": prediction.leaf_index,
            "leaf_hash": prediction.leaf_hash,
            "merkle_root": prediction.merkle_root,
            "key_id": prediction.key_id,
        },
    )


def _version(connection: Connection, version_id: str) -> VersionRecord:
    versions, models = schema.model_versions, schema.models
    row = connection.execute(
        select(models.c.name, versions.c.version)
        .join(models, models.c.id == versions.c.model_id)
        .where(versions.c.id == version_id)
    ).first()
    if row is None:
        raise NotFoundError(
            f"model version {version_id} named by the prediction is not registered."
        )
    return registry.get_version_row(connection, row.name, row.version)


def _model_step(
    store: Store, prediction: CapturedPrediction, version: VersionRecord, artifact: ArtifactRecord
) -> TraceStep:
    details = {
        "ref": version.ref,
        "digest": version.digest,
        "artifact_id": artifact.id,
        "created_by": version.created_by,
        "created_at": records.ms_to_iso(version.created_ms),
        "flavor": artifact.properties.get("flavor", {}).get("flavor"),
        "metrics": version.metrics,
    }
    if prediction.model_digest != version.digest:
        reason = (
            f"the prediction names model digest {prediction.model_digest} but {version.ref} "
            f"is {version.digest}"
        )
        return TraceStep("model_version", version.ref, FAILED, reason, details)
    if artifact.digest != version.digest:
        reason = f"{version.ref} records {version.digest} but its artifact is {artifact.digest}"
        return TraceStep("model_version", version.ref, FAILED, reason, details)
    check = check_content(store, artifact)
    title = f"{version.ref} {version.digest}"
    return TraceStep("model_version", title, check.outcome, check.reason, details)


def check_content(store: Store, artifact: ArtifactRecord) -> Check:
    """Re-hash the bytes clew holds for an artifact; say plainly when it holds none.

    Bytes clew should hold but does not, or holds altered, fail; a thing recorded only by
    reference or by digest (a data source, a feature group) is not checkable, not failed.
    """
    digest = artifact.digest
    if not store.blobs.exists(digest):
        if artifact.uri:
            return Check(
                NOT_CHECKABLE,
                f"recorded by reference to {artifact.uri} (etag {artifact.properties.get('etag')});"
                " clew holds no copy to re-hash",
            )
        if artifact.type in HELD_TYPES:
            return Check(FAILED, f"the bytes of {digest} are missing from the blob store")
        return Check(
            NOT_CHECKABLE,
            f"only the digest {digests.short(digest)} is recorded; there are no bytes",
        )
    try:
        data = store.blobs.read_bytes(digest)
    except IntegrityError:
        return Check(FAILED, f"{digest} does not match its stored bytes (altered or damaged)")
    manifest = _manifest(data)
    if manifest is None:
        return Check(VERIFIED, f"{digests.short(digest)} re-hashed from the blob store")
    for path, file_digest in sorted(manifest.items()):
        if not store.blobs.verify(file_digest):
            return Check(
                FAILED, f"file {path} ({file_digest}) does not match its digest {digest} records"
            )
    return Check(VERIFIED, f"all {len(manifest)} files re-hashed and match {digests.short(digest)}")


def verify_content(store: Store, artifact: ArtifactRecord) -> tuple[bool, str]:
    """``check_content`` as verified-or-not, for readers with no third answer (model cards)."""
    check = check_content(store, artifact)
    return check.outcome == VERIFIED, check.reason


def _manifest(data: bytes) -> dict[str, str] | None:
    if not data.startswith(b'{"files":'):
        return None
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or parsed.get("kind") != "clew.manifest/v1":
        return None
    return dict(parsed.get("files", {}))


# --- approvals and promotions ------------------------------------------------------------


def _events_step(connection: Connection, version: VersionRecord) -> TraceStep:
    table = schema.registry_events
    rows = connection.execute(
        select(table)
        .where(
            table.c.model_id == version.model_id,
            or_(table.c.version == version.version, table.c.from_version == version.version),
        )
        .order_by(table.c.seq)
    ).all()
    events = [
        {
            "kind": row.kind,
            "version": row.version,
            "alias": row.alias,
            "from_version": row.from_version,
            "actor": row.actor,
            "time": records.ms_to_iso(row.time_ms),
            "comment": row.comment,
            "evidence": json.loads(row.evidence or "{}"),
            "signature": _signature(connection, row, version),
        }
        for row in rows
    ]
    check = _audit_entries_intact(connection, version.ref)
    failed = [e for e in events if (e["signature"] or {}).get("state") == user_keys.FAILED]
    if failed:
        check = Check(
            FAILED,
            f"the {failed[0]['kind']} by {failed[0]['actor']}: {failed[0]['signature']['detail']}",
        )
    approvers = [e["actor"] for e in events if e["kind"] in ("approve", "approved")]
    title = (
        f"{len(events)} events; approved by {', '.join(approvers)}"
        if approvers
        else f"{len(events)} events; no approval recorded"
    )
    return TraceStep("approvals", title, check.outcome, check.reason, {"events": events})


def _signature(connection: Connection, row: Any, version: VersionRecord) -> dict[str, Any] | None:
    """The signature check of a decision or alias move (None for other events)."""
    if row.kind not in (*registry.DECISION_KINDS, registry.ALIAS_SET) or row.version is None:
        return None
    event = records.from_fields(RegistryEvent, row._mapping, model=version.name)
    return user_keys.verdict(connection, event, version.digest).to_dict()


def _audit_entries_intact(connection: Connection, target: str) -> Check:
    """Re-hash the audit entries about ``target`` and check each links to its predecessor."""
    table = schema.audit_log
    rows = connection.execute(select(table).where(table.c.target == target)).all()
    if not rows:
        return Check(FAILED, f"no audit entry records {target}")
    for row in rows:
        entry = AuditEntry(**row._mapping)
        if audit.entry_hash(entry.__dict__) != entry.hash:
            return Check(FAILED, f"audit entry #{entry.seq} about {target} was edited")
        previous = connection.execute(
            select(table.c.hash).where(table.c.seq == entry.seq - 1)
        ).scalar()
        expected = audit.GENESIS if entry.seq == 1 else previous
        if entry.prev_hash != expected:
            return Check(
                FAILED,
                f"audit entry #{entry.seq} about {target} no longer links to #{entry.seq - 1}",
            )
    return Check(VERIFIED, f"{len(rows)} audit entries about {target} re-hashed and linked")


# --- training run ----------------------------------------------------------------------


def _run_step(store: Store, connection: Connection, run_id: str) -> TraceStep:
    found = read_runs(connection, [run_id])
    if not found:
        return TraceStep("training_run", f"run:{run_id}", FAILED, f"run {run_id} does not exist")
    run = found[0]
    details: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "experiment": run.experiment,
        "user": run.user,
        "status": run.status,
        "start_time": records.ms_to_iso(run.start_ms),
        "end_time": records.ms_to_iso(run.end_ms),
        "command": run.command,
        "seed": run.seed,
        "params": run.params,
        "metrics": run.metrics,
    }
    checks: list[Check] = []
    if run.code_artifact_id:
        code = get_artifact_row(connection, run.code_artifact_id)
        details["code"] = {"digest": code.digest, **code.properties}
        checks.append(_labelled("code revision", _verify_code(store, code)))
    else:
        checks.append(Check(NOT_CHECKABLE, "no code revision was captured (not run in git)"))
    if run.environment_artifact_id:
        environment = get_artifact_row(connection, run.environment_artifact_id)
        details["environment"] = environment.properties
        checks.append(_labelled("environment", check_content(store, environment)))
    else:
        checks.append(Check(NOT_CHECKABLE, "no environment was captured"))
    combined = _worst(checks)
    title = f"run:{run.id} {run.experiment}/{run.name} ({run.kind})"
    return TraceStep("training_run", title, combined.outcome, combined.reason, details)


def _labelled(what: str, check: Check) -> Check:
    return Check(check.outcome, f"{what}: {check.reason}")


def _worst(checks: list[Check]) -> Check:
    """Several checks as one: the worst outcome, with the reasons that carry it."""
    outcome = next(o for o in (FAILED, NOT_CHECKABLE, VERIFIED) if o in {c.outcome for c in checks})
    return Check(outcome, "; ".join(c.reason for c in checks if c.outcome == outcome))


def _verify_code(store: Store, code: ArtifactRecord) -> Check:
    """A code artifact's digest is over (commit, diff digest, remote, script): recompute it
    (records from before the script was part of it re-derive without)."""
    properties = code.properties
    derived = {digests.code_digest(properties), digests.code_digest(properties, with_script=False)}
    if code.digest not in derived:
        return Check(FAILED, f"commit and diff no longer hash to {code.digest}")
    diff = properties.get("diff_digest")
    if diff and not store.blobs.verify(diff):
        return Check(FAILED, f"the uncommitted diff {diff} is missing or altered")
    commit = str(properties.get("commit"))[:12]
    return Check(VERIFIED, f"commit {commit} re-derives {digests.short(code.digest)}")


# --- data -------------------------------------------------------------------------------


def _data_steps(store: Store, connection: Connection, model_artifact_id: str) -> list[TraceStep]:
    edges, _ = graph.walk(connection, model_artifact_id, True, MAX_DEPTH)
    node_ids = {e.source_id for e in edges} | {e.destination_id for e in edges}
    nodes = graph.describe(connection, node_ids)
    producers: dict[str, list[str]] = {}
    for edge in edges:
        if edge.association == records.PRODUCED:
            producers.setdefault(edge.destination_id, []).append(edge.source_id)
    depth: dict[str, int] = {}
    for edge in edges:
        depth.setdefault(edge.source_id, edge.depth)
    data = [
        n
        for n in nodes.values()
        if n.kind == "artifact" and n.id != model_artifact_id and n.id in depth
    ]
    data.sort(key=lambda n: (depth[n.id], n.type, n.name))
    steps = []
    for node in data:
        if node.type not in DATA_TYPES and node.type != "data_source":
            continue
        artifact = get_artifact_row(connection, node.id)
        check = check_content(store, artifact)
        made_by = [
            {"run": f"run:{run_id}", "name": nodes[run_id].name, "kind": nodes[run_id].type}
            for run_id in producers.get(node.id, [])
            if run_id in nodes
        ]
        details = {
            "ref": node.ref,
            "type": node.type,
            "digest": node.digest,
            "uri": artifact.uri,
            "produced_by": made_by,
            "properties": _brief(artifact.properties),
        }
        kind = "data_source" if node.type == "data_source" else "input_data"
        steps.append(
            TraceStep(
                kind, f"{node.type}:{node.name} {node.digest}", check.outcome, check.reason, details
            )
        )
    return steps


def _brief(properties: dict[str, Any]) -> dict[str, Any]:
    """Properties without bulky profiles, for a trace people read."""
    return {k: v for k, v in properties.items() if k not in ("profile", "columns", "stats")}


# --- the records the thread rests on ----------------------------------------------------


def _records_step(connection: Connection, version: VersionRecord, artifact_id: str) -> TraceStep:
    """Every row this trace read must match the image the audit chain recorded for it: a
    forged approval or a rewired edge fails the trace, not only ``clew audit verify``."""
    edges, _ = graph.walk(connection, artifact_id, True, MAX_DEPTH)
    nodes = {artifact_id} | {edge.source_id for edge in edges}
    runs = schema.runs.c
    run_ids = set(connection.execute(select(runs.id).where(runs.id.in_(nodes))).scalars())
    if version.run_id:
        run_ids.add(version.run_id)
    params = schema.params.c
    wanted: dict[str, list[dict[str, Any]]] = {
        "model_versions": [{"id": version.id}],
        "registry_events": [
            {"id": event_id}
            for event_id in connection.execute(
                select(schema.registry_events.c.id).where(
                    schema.registry_events.c.model_id == version.model_id,
                    schema.registry_events.c.version == version.version,
                )
            ).scalars()
        ],
        "runs": [{"id": run_id} for run_id in sorted(run_ids)],
        "params": [
            {"run_id": run_id, "key": key}
            for run_id, key in connection.execute(
                select(params.run_id, params.key).where(params.run_id.in_(run_ids))
            )
        ],
        "artifacts": [{"id": node} for node in sorted(nodes - run_ids)],
        "edges": [
            {
                "source_id": edge.source_id,
                "destination_id": edge.destination_id,
                "association": edge.association,
            }
            for edge in edges
        ],
    }
    problems = [
        problem
        for table, keys in wanted.items()
        for problem in record_check.vouch(connection, table, keys)
    ]
    count = sum(len(keys) for keys in wanted.values())
    if problems:
        return TraceStep(
            "records",
            f"{len(problems)} of {count} records differ from the audit chain",
            FAILED,
            f"{problems[0].describe()}; the store was changed outside clew (clew audit verify "
            "lists every altered record)",
            {"problems": [problem.describe() for problem in problems]},
        )
    return TraceStep(
        "records",
        f"{count} governance and lineage records",
        VERIFIED,
        "each matches the image its audit entry recorded, and each entry is intact",
        {"checked": count},
    )
