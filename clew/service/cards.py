"""Structured model cards: lineage-known facts assembled on read, edited fields versioned.

``card`` reads the live card (``service/model_card.py``: status, run, data, code, approvals)
and adds the version's unresolved findings, its review state, and the explanation and bias
reports linked to it (report artifacts, grouped by their ``kind`` property or name; none is
fine). ``edit`` appends the next revision of the edited fields (the whole document, so every
earlier card stays readable) with its row image and audit entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from clew.domain import cards as rules
from clew.domain import digests, ids, records
from clew.domain.cards import Card
from clew.domain.records import ArtifactRecord, VersionRecord
from clew.errors import InvalidInputError
from clew.service import (
    audit,
    findings,
    model_card,
    record_check,
    registry,
    reviews,
    signed_heads,
)
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

CARDS = schema.model_cards
REPORT_KINDS = ("explanation", "bias")


class CardService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def card(self, ref: str) -> Card:
        """The version's card: its newest edited revision and the facts as recorded now."""
        with self.store.db.read() as connection:
            version = registry.resolve_version(connection, registry.parse_model_ref(ref))
            model = registry.get_model_row(connection, model_id=version.model_id)
            revisions = _revisions(connection, version)
            open_findings = findings.unresolved(connection, model.id, version.version)
            review = reviews.status_of(
                connection, model, reviews.cadence(connection), now_ms()
            ).to_dict()
            reports = _reports(connection, version)
        live = model_card.model_card(self.store, version.name, version.version)
        facts = _facts(live, reports, review, [f.to_dict() for f in open_findings])
        newest = revisions[-1] if revisions else None
        return Card(
            model=version.name,
            version=version.version,
            revision=newest["revision"] if newest else 0,
            edited=rules.complete(json.loads(newest["content"]) if newest else {}),
            facts=facts,
            edited_by=newest["created_by"] if newest else None,
            edited_ms=newest["created_ms"] if newest else None,
            history=[_history(row) for row in revisions],
        )

    @signed_heads.checkpointed(decision=False)
    def edit(self, ref: str, actor: str, changes: Mapping[str, Any], comment: str = "") -> Card:
        """Change edited fields of the version's card; the result is the next revision."""
        checked = rules.check_edits(changes)
        if not isinstance(comment, str) or len(comment) > rules.MAX_FIELD:
            raise InvalidInputError("a card edit's comment must be text.")
        with self.store.db.write() as connection:
            version = registry.resolve_version(connection, registry.parse_model_ref(ref))
            revisions = _revisions(connection, version)
            before = json.loads(revisions[-1]["content"]) if revisions else {}
            content = {**before, **checked}
            row = {
                "id": ids.new_id(),
                "model_id": version.model_id,
                "version": version.version,
                "revision": len(revisions) + 1,
                "content": json.dumps(content, sort_keys=True),
                "digest": digests.digest_json(content),
                "comment": comment.strip(),
                "created_ms": now_ms(),
                "created_by": actor,
            }
            connection.execute(CARDS.insert().values(**row))
            audit_payload = {**row, "changed": sorted(checked)}
            audit.stage(connection, CARDS, row)
            audit.append(connection, actor, "card.edit", version.ref, audit_payload)
        return self.card(version.ref)

    def import_sagemaker(
        self, ref: str, actor: str, document: Mapping[str, Any], comment: str = ""
    ) -> Card:
        """Edit the card from a SageMaker Model Card JSON document's human-written fields."""
        return self.edit(ref, actor, rules.from_sagemaker(document), comment or "imported")


def _revisions(connection: Connection, version: VersionRecord) -> list[dict[str, Any]]:
    rows = [
        dict(row._mapping)
        for row in connection.execute(
            select(CARDS)
            .where(CARDS.c.model_id == version.model_id, CARDS.c.version == version.version)
            .order_by(CARDS.c.revision)
        )
    ]
    record_check.require_vouched(
        connection, CARDS.name, [{"id": row["id"]} for row in rows], f"the card of {version.ref}"
    )
    return rows


def _history(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "revision": row["revision"],
        "edited_by": row["created_by"],
        "edited_at": records.ms_to_iso(row["created_ms"]),
        "comment": row["comment"],
        "digest": row["digest"],
    }


def _reports(connection: Connection, version: VersionRecord) -> dict[str, list[dict[str, Any]]]:
    """Report artifacts about the version (derived from its model, or produced by a run that
    used it or trained it), grouped by kind: explanation, bias, other."""
    edges, artifacts = schema.edges, schema.artifacts
    using = select(edges.c.destination_id).where(
        edges.c.source_id == version.artifact_id,
        edges.c.association == records.CONTRIBUTED_TO,
        edges.c.destination_kind == "run",
    )
    runs = [version.run_id, *connection.execute(using).scalars()]
    query = (
        select(artifacts)
        .join(edges, edges.c.destination_id == artifacts.c.id)
        .where(
            artifacts.c.type == "report",
            (
                edges.c.source_id.in_([r for r in runs if r])
                & (edges.c.association == records.PRODUCED)
            )
            | (
                (edges.c.source_id == version.artifact_id)
                & (edges.c.association == records.DERIVED_FROM)
            ),
        )
        .order_by(artifacts.c.created_ms)
    )
    grouped: dict[str, list[dict[str, Any]]] = {kind: [] for kind in (*REPORT_KINDS, "other")}
    seen: set[str] = set()
    for row in connection.execute(query):
        if row.id in seen:
            continue
        seen.add(row.id)
        properties = json.loads(row.properties) if isinstance(row.properties, str) else {}
        kind = _kind(row.name, properties)
        grouped[kind].append(
            {
                "id": row.id,
                "type": row.type,
                "name": row.name,
                "digest": row.digest,
                "kind": kind,
                "properties": properties,
            }
        )
    return grouped


def _kind(name: str, properties: Mapping[str, Any]) -> str:
    stated = str(
        properties.get("clew_report")
        or properties.get("kind")
        or properties.get("report_kind")
        or ""
    ).lower()
    for kind in REPORT_KINDS:
        if kind in stated or kind in name.lower():
            return kind
    return "other"


def _facts(
    live: model_card.ModelCard,
    reports: dict[str, list[dict[str, Any]]],
    review: dict[str, Any],
    open_findings: list[dict[str, Any]],
) -> dict[str, Any]:
    run = live.run
    return {
        "digest": live.version.digest,
        "owner": live.model.owner,
        "risk_tier": live.model.risk_tier,
        "description": live.version.description or live.model.description,
        "created_by": live.version.created_by,
        "created_at": records.ms_to_iso(live.version.created_ms),
        "status": live.status["status"],
        "metrics": live.version.metrics,
        "training_run": None
        if run is None
        else {"id": run.id, "user": run.user, "params": run.params, "metrics": run.metrics},
        "training_data": [_artifact(item) for item in live.inputs],
        "code": _artifact(live.code) if live.code else None,
        "environment": _artifact(live.environment) if live.environment else None,
        "approvals": [
            {"actor": e.actor, "time": records.ms_to_iso(e.time_ms), "comment": e.comment}
            for e in live.events
            if e.kind == registry.APPROVED
        ],
        "aliases": sorted(a for a, n in live.aliases.items() if n == live.version.version),
        "monitoring": {
            "status": live.status["status"],
            "open_violations": live.status["open_violations"],
            "predictions": live.predictions,
        },
        "open_findings": open_findings,
        "review": review,
        "reports": reports,
    }


def _artifact(item: ArtifactRecord) -> dict[str, Any]:
    return {"id": item.id, "type": item.type, "name": item.name, "digest": item.digest}
