"""Regulator-ready documents generated from the records: the SR 11-7 model inventory and the
EU AI Act Annex IV technical documentation pack of one version.

Nothing here is typed in by hand: every row and statement is read from the registry, lineage,
approvals, findings, reviews, cards and monitoring, and each Annex IV statement names the
record it came from (``source``: its kind, id or ref, and digest where it has one). The pack is
signed with the store's key over its digest, so a reader with the public key can tell it was
not altered after clew wrote it. What no record holds is listed under ``to_write``: a person
must still write it (docs/compliance.md).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, func, select

from clew.domain import digests, records, signatures
from clew.domain.findings import ReviewStatus
from clew.domain.records import ModelRecord, VersionRecord
from clew.service import graph, policy, registry, reviews, signing
from clew.service.cards import CardService
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.location import Store

PACK_FORMAT = "clew.annex-iv/1"
DEPENDENCY_DEPTH = 10
INVENTORY_COLUMNS = [
    "id",
    "model",
    "purpose",
    "owner",
    "developer",
    "validator",
    "risk_tier",
    "validation_status",
    "validation_date",
    "next_review_date",
    "open_findings",
    "open_high_findings",
    "upstream_models",
    "downstream_models",
    "limitations",
]
TO_WRITE = [
    "the intended purpose in the words of the provider, and the persons or groups it affects "
    "(Annex IV 1(a), 1(g)), where the card's overview and intended uses do not say it",
    "the design choices and their rationale, including trade-offs (Annex IV 2(b))",
    "the human oversight measures (Annex IV 2(e), Article 14)",
    "the expected level of accuracy, robustness and cybersecurity and the foreseeable "
    "circumstances that may affect it (Annex IV 3)",
    "the risk management system (Annex IV 5, Article 9)",
    "the EU declaration of conformity and the harmonised standards applied (Annex IV 7, 8)",
    "how long logs are kept and why (Article 19): clew keeps them until they are deleted",
]


class ExportService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cards = CardService(store)

    def sr11_7_inventory(self) -> list[dict[str, Any]]:
        """One row per registered model, in ``INVENTORY_COLUMNS`` order."""
        with self.store.db.read() as connection:
            days, now = reviews.cadence(connection), now_ms()
            models = registry.all_models(connection)
            statuses = {m.id: reviews.status_of(connection, m, days, now) for m in models}
            rows = [self._inventory_row(connection, model, statuses[model.id]) for model in models]
        return rows

    def annex_iv(self, ref: str) -> dict[str, Any]:
        """The signed technical documentation pack of the version ``ref`` names."""
        card = self._cards.card(ref)
        with self.store.db.read() as connection:
            version = registry.get_version_row(connection, card.model, card.version)
            model = registry.get_model_row(connection, model_id=version.model_id)
            sections = {
                "general_description": _general(card, model, version),
                "development_process": _development(card, version),
                "data_and_provenance": _data(connection, card),
                "validation_and_testing": _validation(card, version),
                "changes_since_previous_version": _changes(connection, model, version),
                "third_party_components": _third_party(connection, card, version),
                "monitoring_plan": _monitoring(connection, card, model),
                "log_retention": _logs(connection, version),
            }
        pack: dict[str, Any] = {
            "format": PACK_FORMAT,
            "ref": card.ref,
            "generated_at": records.ms_to_iso(now_ms()),
            "sections": sections,
            "to_write": TO_WRITE,
        }
        return sign_pack(self.store, pack)

    def _inventory_row(
        self, connection: Connection, model: ModelRecord, status: ReviewStatus
    ) -> dict[str, Any]:
        latest = (
            registry.get_version_row(connection, model.name, model.last_version)
            if model.last_version
            else None
        )
        edited = _edited(connection, latest)
        last = status.last_review
        return {
            "id": model.id,
            "model": model.name,
            "purpose": edited.get("overview") or model.description,
            "owner": model.owner,
            "developer": latest.created_by if latest else None,
            "validator": last.reviewed_by if last else _approvers(connection, model, latest),
            "risk_tier": model.risk_tier,
            "validation_status": status.state,
            "validation_date": records.ms_to_iso(last.reviewed_ms) if last else None,
            "next_review_date": status.to_dict()["next_due"],
            "open_findings": status.open_findings,
            "open_high_findings": status.blocking_findings,
            "upstream_models": ", ".join(_dependencies(connection, latest, upstream=True)),
            "downstream_models": ", ".join(_dependencies(connection, latest, upstream=False)),
            "limitations": edited.get("limitations", ""),
        }


def sign_pack(store: Store, pack: dict[str, Any]) -> dict[str, Any]:
    """``pack`` with its digest and the store key's signature over that digest."""
    digest = digests.digest_json(pack)
    signer = signing.Signer(store)
    return {
        **pack,
        "digest": digest,
        "signature": {
            "key_id": signer.key_id,
            "public_key": signer.public_pem.decode(),
            "signature": signer.sign(digest.encode()),
        },
    }


def verify_pack(pack: dict[str, Any], public_key_pem: bytes) -> bool:
    """Whether ``pack`` is, byte for byte, what the holder of ``public_key_pem`` signed."""
    body = {key: value for key, value in pack.items() if key not in ("digest", "signature")}
    digest = digests.digest_json(body)
    signature = pack.get("signature") or {}
    return digest == pack.get("digest") and signatures.verify(
        public_key_pem, digest.encode(), str(signature.get("signature", ""))
    )


def _statement(text: str, kind: str, ref: str, digest: str | None = None) -> dict[str, Any]:
    source = {"kind": kind, "ref": ref}
    if digest:
        source["digest"] = digest
    return {"text": text, "source": source}


def _card_source(card: Any) -> tuple[str, str]:
    return "model_card", f"{card.ref}#revision-{card.revision}"


def _general(card: Any, model: ModelRecord, version: VersionRecord) -> list[dict[str, Any]]:
    kind, ref = _card_source(card)
    edited = card.to_dict()["edited"]
    found = [
        _statement(
            f"{card.ref} is version {version.version} of model {model.name}, owned by "
            f"{model.owner}, risk tier {model.risk_tier or 'not set'}.",
            "model_version",
            version.ref,
            version.digest,
        )
    ]
    for name, label in (
        ("overview", "Overview"),
        ("intended_uses", "Intended uses"),
        ("out_of_scope_uses", "Out-of-scope uses"),
        ("limitations", "Limitations"),
    ):
        if edited.get(name):
            found.append(_statement(f"{label}: {edited[name]}", kind, ref))
    return found


def _development(card: Any, version: VersionRecord) -> list[dict[str, Any]]:
    facts = card.facts
    run = facts.get("training_run")
    if run is None:
        return [
            _statement(
                "No training run is recorded for this version.", "model_version", version.ref
            )
        ]
    found = [
        _statement(
            f"Trained by run {run['id']} (user {run['user']}) with parameters "
            f"{_pairs(run['params']) or 'none recorded'}.",
            "run",
            run["id"],
        )
    ]
    for key, label in (("code", "Code"), ("environment", "Environment")):
        item = facts.get(key)
        if item:
            found.append(
                _statement(
                    f"{label}: {item['type']}:{item['name']}.",
                    "artifact",
                    item["id"],
                    item["digest"],
                )
            )
    return found


def _data(connection: Connection, card: Any) -> list[dict[str, Any]]:
    found = []
    for item in card.facts.get("training_data", []):
        sources = _upstream_names(connection, item["id"])
        origin = f", derived from {', '.join(sources)}" if sources else ""
        found.append(
            _statement(
                f"Training data {item['type']}:{item['name']}{origin}.",
                "artifact",
                item["id"],
                item["digest"],
            )
        )
    return found or [
        _statement("No training data is recorded for this version.", "model_version", card.ref)
    ]


def _validation(card: Any, version: VersionRecord) -> list[dict[str, Any]]:
    facts = card.facts
    found = [
        _statement(
            f"Registered metrics: {_pairs(facts.get('metrics') or {}) or 'none'}.",
            "model_version",
            version.ref,
            version.digest,
        )
    ]
    found += [
        _statement(
            f"Approved by {a['actor']} at {a['time']}: {a['comment']}", "approval", version.ref
        )
        for a in facts.get("approvals", [])
    ]
    found += [
        _statement(
            f"Unresolved {f['severity']} finding: {f['description']} (owner {f['owner']}).",
            "finding",
            f["id"],
        )
        for f in facts.get("open_findings", [])
    ]
    review = facts.get("review") or {}
    last = review.get("last_review")
    if last:
        found.append(
            _statement(
                f"Last reviewed by {last['reviewed_by']} at {last['reviewed_at']} "
                f"({last['comment']}); review state {review.get('state')}.",
                "review",
                last["event_id"],
            )
        )
    for kind in ("explanation", "bias"):
        found += [
            _statement(f"{kind.capitalize()} report {r['name']}.", "artifact", r["id"], r["digest"])
            for r in facts.get("reports", {}).get(kind, [])
        ]
    return found


def _changes(
    connection: Connection, model: ModelRecord, version: VersionRecord
) -> list[dict[str, Any]]:
    if version.version == 1:
        return [_statement("This is the model's first version.", "model_version", version.ref)]
    previous = registry.get_version_row(connection, model.name, version.version - 1)
    lines = reviews.material_changes(connection, previous, version)
    found = [_statement(line, "model_version", version.ref, version.digest) for line in lines]
    before, after = previous.metrics, version.metrics
    for key in sorted(set(before) & set(after)):
        if before[key] != after[key]:
            found.append(
                _statement(
                    f"Metric {key} went from {_number(before[key])} in {previous.ref} to "
                    f"{_number(after[key])}.",
                    "model_version",
                    version.ref,
                )
            )
    return found or [
        _statement(f"Same training data and code as {previous.ref}.", "model_version", version.ref)
    ]


def _third_party(connection: Connection, card: Any, version: VersionRecord) -> list[dict[str, Any]]:
    """Models upstream of this one in lineage (pre-trained components), registered or not."""
    _, kinds, _ = graph.walk_nodes(connection, version.artifact_id, True, DEPENDENCY_DEPTH)
    ids = [node for node, kind in kinds.items() if kind == "artifact"]
    nodes = graph.describe(connection, ids)
    found = [
        _statement(
            f"Pre-trained component {node.type}:{node.name}.", "artifact", node.id, node.digest
        )
        for node in nodes.values()
        if node.type == "model"
    ]
    return found or [
        _statement(
            "No pre-trained model is recorded upstream of this version.",
            "model_version",
            version.ref,
        )
    ]


def _monitoring(connection: Connection, card: Any, model: ModelRecord) -> list[dict[str, Any]]:
    rules = policy.current(connection)
    action = rules.rules.action_for(model.name, model.risk_tier)
    found = [
        _statement(
            f"A monitoring violation on this model is handled as '{action}' under policy "
            f"version {rules.version}.",
            "policy",
            str(rules.version),
            rules.digest,
        )
    ]
    table = schema.monitor_schedules
    for row in connection.execute(select(table).where(table.c.model_id == model.id)):
        found.append(
            _statement(
                f"Monitor runs on {row.target} at '{row.cron}' (UTC) over windows of "
                f"{row.window_ms // 1000} s.",
                "monitor_schedule",
                row.id,
            )
        )
    monitoring = card.facts.get("monitoring", {})
    found.append(
        _statement(
            f"Status now: {monitoring.get('status')}, "
            f"{len(monitoring.get('open_violations', []))} open violation(s).",
            "model_version",
            card.ref,
        )
    )
    return found


def _logs(connection: Connection, version: VersionRecord) -> list[dict[str, Any]]:
    batches = schema.capture_batches
    count, predictions = connection.execute(
        select(func.count(), func.coalesce(func.sum(batches.c.count), 0)).where(
            batches.c.model_version_id == version.id
        )
    ).one()
    return [
        _statement(
            f"{int(predictions)} prediction(s) of {version.ref} are captured in {int(count)} "
            "signed batch(es); every governance write is in the hash-chained audit log.",
            "capture_batches",
            version.ref,
        )
    ]


def _edited(connection: Connection, version: VersionRecord | None) -> dict[str, Any]:
    if version is None:
        return {}
    table = schema.model_cards
    row = connection.execute(
        select(table.c.content)
        .where(table.c.model_id == version.model_id, table.c.version == version.version)
        .order_by(table.c.revision.desc())
        .limit(1)
    ).scalar()
    return dict(json.loads(row)) if row else {}


def _approvers(
    connection: Connection, model: ModelRecord, version: VersionRecord | None
) -> str | None:
    if version is None:
        return None
    events = registry.read_events(
        connection, model, version=version.version, kinds=(registry.APPROVED,)
    )
    return ", ".join(sorted({event.actor for event in events})) or None


def _dependencies(
    connection: Connection, version: VersionRecord | None, *, upstream: bool
) -> list[str]:
    """Other registered models whose versions' artifacts are up- or downstream in lineage."""
    if version is None:
        return []
    _, kinds, _ = graph.walk_nodes(connection, version.artifact_id, upstream, DEPENDENCY_DEPTH)
    ids = [node for node, kind in kinds.items() if kind == "artifact"]
    if not ids:
        return []
    versions, models = schema.model_versions, schema.models
    names = connection.execute(
        select(models.c.name)
        .join(versions, versions.c.model_id == models.c.id)
        .where(versions.c.artifact_id.in_(ids), models.c.id != version.model_id)
        .distinct()
        .order_by(models.c.name)
    ).scalars()
    return list(names)


def _upstream_names(connection: Connection, artifact_id: str) -> list[str]:
    _, kinds, _ = graph.walk_nodes(connection, artifact_id, True, 3)
    nodes = graph.describe(connection, list(kinds))
    return sorted(f"{node.type}:{node.name}" for node in nodes.values() if node.kind != "run")


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(values.items()))


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else str(value)
