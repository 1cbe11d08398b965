"""``trace``: from one prediction id back along the thread, checking each step as it goes.

prediction (leaf, proof, signature) → model version (every file re-hashed) → approvals and
promotions (their audit entries re-hashed) → training run (code identity and environment
re-derived) → input datasets (re-hashed where clew holds the bytes) and the runs that made
them → data sources. Each step says ``verified`` and why, so an auditor sees exactly which
links are proven and which are only recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, or_, select

from clew.domain import digests, records
from clew.domain.records import ArtifactRecord, RegistryEvent, VersionRecord
from clew.errors import IntegrityError, NotFoundError
from clew.service import audit, capture, graph, registry, user_keys
from clew.service.artifacts import load_artifact
from clew.service.capture import CapturedPrediction
from clew.service.runs import load_runs
from clew.store import schema
from clew.store.location import Store

DATA_TYPES = ("dataset", "feature_set", "feature_group", "file", "directory")
MAX_DEPTH = 10


@dataclass
class TraceStep:
    kind: str
    title: str
    verified: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "verified": self.verified,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass
class Trace:
    """The thread of one prediction; ``str(trace)`` is the readable form."""

    prediction_id: str
    steps: list[TraceStep]

    @property
    def verified(self) -> bool:
        return all(step.verified for step in self.steps)

    def step(self, kind: str) -> TraceStep:
        for candidate in self.steps:
            if candidate.kind == kind:
                return candidate
        raise KeyError(kind)

    def steps_of(self, kind: str) -> list[TraceStep]:
        return [step for step in self.steps if step.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "verified": self.verified,
            "steps": [step.to_dict() for step in self.steps],
        }

    def render(self) -> str:
        lines = [f"trace of prediction {self.prediction_id}"]
        for step in self.steps:
            mark = "✓" if step.verified else "✗"
            lines.append(f"{mark} {step.kind.replace('_', ' ')}: {step.title}")
            lines.append(f"    {step.reason}")
            lines.extend(f"    {line}" for line in _detail_lines(step))
        unverified = [step for step in self.steps if not step.verified]
        lines.append(
            "every step verified"
            if not unverified
            else f"{len(unverified)} of {len(self.steps)} steps not verified"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def trace_prediction(store: Store, prediction_id: str) -> Trace:
    prediction = capture.find_prediction(store, prediction_id)
    steps = [_prediction_step(prediction)]
    with store.db.read() as connection:
        version = _version(connection, prediction.model_version_id)
        artifact = load_artifact(connection, version.artifact_id)
        steps.append(_model_step(store, prediction, version, artifact))
        steps.append(_events_step(connection, version))
        if version.run_id:
            steps.append(_run_step(store, connection, version.run_id))
        steps.extend(_data_steps(store, connection, artifact.id))
    return Trace(prediction.id, steps)


# --- prediction and model ---------------------------------------------------------------


def _prediction_step(prediction: CapturedPrediction) -> TraceStep:
    return TraceStep(
        "prediction",
        f"{prediction.id} by {prediction.model}/{prediction.version} "
        f"at {records.ms_to_iso(prediction.time_ms)}",
        prediction.verification.verified,
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
    return registry.load_version(connection, row.name, row.version)


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
        return TraceStep("model_version", version.ref, False, reason, details)
    if artifact.digest != version.digest:
        reason = f"{version.ref} records {version.digest} but its artifact is {artifact.digest}"
        return TraceStep("model_version", version.ref, False, reason, details)
    verified, reason = verify_content(store, artifact)
    return TraceStep("model_version", f"{version.ref} {version.digest}", verified, reason, details)


def verify_content(store: Store, artifact: ArtifactRecord) -> tuple[bool, str]:
    """Re-hash the bytes clew holds for an artifact; say plainly when it holds none."""
    digest = artifact.digest
    if not store.blobs.exists(digest):
        if artifact.uri:
            return False, (
                f"recorded by reference to {artifact.uri} (etag {artifact.properties.get('etag')});"
                " clew holds no copy to re-hash"
            )
        if artifact.type in ("model", "dataset", "file", "directory", "environment"):
            return False, f"the bytes of {digest} are missing from the blob store"
        return False, f"only the digest {digests.short(digest)} is recorded; there are no bytes"
    try:
        data = store.blobs.read_bytes(digest)
    except IntegrityError:
        return False, f"{digest} does not match its stored bytes (altered or damaged)"
    manifest = _manifest(data)
    if manifest is None:
        return True, f"{digests.short(digest)} re-hashed from the blob store"
    for path, file_digest in sorted(manifest.items()):
        if not store.blobs.verify(file_digest):
            return False, f"file {path} ({file_digest}) does not match its digest {digest} records"
    return True, f"all {len(manifest)} files re-hashed and match {digests.short(digest)}"


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
        .order_by(table.c.id)
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
    verified, reason = _audit_entries_intact(connection, version.ref)
    failed = [e for e in events if (e["signature"] or {}).get("state") == user_keys.FAILED]
    if failed:
        verified = False
        reason = (
            f"the {failed[0]['kind']} by {failed[0]['actor']}: {failed[0]['signature']['detail']}"
        )
    approvers = [e["actor"] for e in events if e["kind"] in ("approve", "approved")]
    title = (
        f"{len(events)} events; approved by {', '.join(approvers)}"
        if approvers
        else f"{len(events)} events; no approval recorded"
    )
    return TraceStep("approvals", title, verified, reason, {"events": events})


def _signature(connection: Connection, row: Any, version: VersionRecord) -> dict[str, Any] | None:
    """The signature check of a decision or alias move (None for other events)."""
    if row.kind not in (*registry.DECISION_KINDS, registry.ALIAS_SET) or row.version is None:
        return None
    event = records.from_fields(RegistryEvent, row._mapping, model=version.name)
    return user_keys.verdict(connection, event, version.digest).to_dict()


def _audit_entries_intact(connection: Connection, target: str) -> tuple[bool, str]:
    """Re-hash the audit entries about ``target`` and check each links to its predecessor."""
    table = schema.audit_log
    rows = connection.execute(select(table).where(table.c.target == target)).all()
    if not rows:
        return False, f"no audit entry records {target}"
    for row in rows:
        entry = audit.AuditEntry(**row._mapping)
        if audit.entry_hash(entry.__dict__) != entry.hash:
            return False, f"audit entry #{entry.seq} about {target} was edited"
        previous = connection.execute(
            select(table.c.hash).where(table.c.seq == entry.seq - 1)
        ).scalar()
        expected = audit.GENESIS if entry.seq == 1 else previous
        if entry.prev_hash != expected:
            return (
                False,
                f"audit entry #{entry.seq} about {target} no longer links to #{entry.seq - 1}",
            )
    return True, f"{len(rows)} audit entries about {target} re-hashed and linked"


# --- training run ----------------------------------------------------------------------


def _run_step(store: Store, connection: Connection, run_id: str) -> TraceStep:
    found = load_runs(connection, [run_id])
    if not found:
        return TraceStep("training_run", f"run:{run_id}", False, f"run {run_id} does not exist")
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
    problems: list[str] = []
    checks: list[str] = []
    if run.code_artifact_id:
        code = load_artifact(connection, run.code_artifact_id)
        details["code"] = {"digest": code.digest, **code.properties}
        _check(_verify_code(store, code), "code revision", problems, checks)
    else:
        problems.append("no code revision was captured")
    if run.environment_artifact_id:
        environment = load_artifact(connection, run.environment_artifact_id)
        details["environment"] = environment.properties
        _check(verify_content(store, environment), "environment", problems, checks)
    else:
        problems.append("no environment was captured")
    reason = "; ".join(problems) if problems else "; ".join(checks)
    title = f"run:{run.id} {run.experiment}/{run.name} ({run.kind})"
    return TraceStep("training_run", title, not problems, reason, details)


def _check(result: tuple[bool, str], what: str, problems: list[str], checks: list[str]) -> None:
    verified, reason = result
    (checks if verified else problems).append(f"{what}: {reason}")


def _verify_code(store: Store, code: ArtifactRecord) -> tuple[bool, str]:
    """A code artifact's digest is over (commit, diff digest, remote): recompute it."""
    properties = code.properties
    identity = {
        "commit": properties.get("commit"),
        "diff_digest": properties.get("diff_digest"),
        "remote": properties.get("remote"),
    }
    if digests.digest_json(identity) != code.digest:
        return False, f"commit and diff no longer hash to {code.digest}"
    diff = properties.get("diff_digest")
    if diff and not store.blobs.verify(diff):
        return False, f"the uncommitted diff {diff} is missing or altered"
    commit = str(properties.get("commit"))[:12]
    return True, f"commit {commit} re-derives {digests.short(code.digest)}"


# --- data -------------------------------------------------------------------------------


def _data_steps(store: Store, connection: Connection, model_artifact_id: str) -> list[TraceStep]:
    edges, _ = graph.walk(connection, model_artifact_id, True, MAX_DEPTH)
    node_ids = {e.source_id for e in edges} | {e.destination_id for e in edges}
    nodes = graph.describe(connection, node_ids)
    producers: dict[str, list[str]] = {}
    for edge in edges:
        if edge.association == records.PRODUCED:
            producers.setdefault(edge.destination_id, []).append(edge.source_id)
    depth = {}
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
        artifact = load_artifact(connection, node.id)
        verified, reason = verify_content(store, artifact)
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
            TraceStep(kind, f"{node.type}:{node.name} {node.digest}", verified, reason, details)
        )
    return steps


def _signature_text(signature: dict[str, Any] | None) -> str:
    if not signature:
        return ""
    key = f" key {signature['key_id'][:19]}..." if signature["key_id"] else ""
    return f" [{signature['state']}{key}]"


def _brief(properties: dict[str, Any]) -> dict[str, Any]:
    """Properties without bulky profiles, for a trace people read."""
    return {k: v for k, v in properties.items() if k not in ("profile", "columns", "stats")}


def _detail_lines(step: TraceStep) -> list[str]:
    details = step.details
    if step.kind == "prediction":
        return [f"output {details['output']!r}  label {details['label']!r}"]
    if step.kind == "approvals":
        return [
            f"{e['time']} {e['kind']}"
            + (f" {e['alias']}" if e["alias"] else "")
            + f" by {e['actor']}"
            + (f": {e['comment']}" if e["comment"] else "")
            + _signature_text(e.get("signature"))
            for e in details["events"]
        ]
    if step.kind == "training_run":
        lines = [f"params {details['params']}", f"metrics {details['metrics']}"]
        if details.get("seed") is not None:
            lines.append(f"seed {details['seed']}")
        code = details.get("code")
        if code:
            lines.append(f"code {code.get('commit')} {code.get('permalink') or ''}".rstrip())
        environment = details.get("environment")
        if environment:
            libraries = environment.get("libraries", {})
            shown = ", ".join(f"{k} {v}" for k, v in sorted(libraries.items()))
            lines.append(f"environment python {environment.get('python')}; {shown}")
        return lines
    if step.kind in ("input_data", "data_source"):
        made = ", ".join(f"{p['run']} {p['name']}" for p in details["produced_by"])
        lines = [f"produced by {made}"] if made else []
        if details.get("uri"):
            lines.append(f"uri {details['uri']}")
        return lines
    return []
