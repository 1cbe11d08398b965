"""The model inventory: every registered model with its latest version's status and aliases.

Filtering, sorting and paging run in SQL over the ``models`` table, and only the rows of the
requested page have their status derived from their events, so a page of an inventory of
thousands of models costs the same as a page of ten. Status comes from the same code that
approvals and promotion use (``approvals.fold_decisions``), never from a copy of the rules.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from clew.domain.records import ModelRecord, RegistryEvent, VersionRecord
from clew.errors import InvalidInputError
from clew.service import approvals, policy, registry
from clew.store import schema
from clew.store.location import Store

SORTS = ("name", "owner", "risk_tier", "latest_version", "last_change")
MAX_PAGE = 500


@dataclass
class InventoryRow:
    model: ModelRecord
    latest: VersionRecord | None
    status: str | None
    aliases: dict[str, int]
    last_change_ms: int


@dataclass
class InventoryPage:
    rows: list[InventoryRow]
    total: int
    offset: int
    limit: int
    owners: list[str] = field(default_factory=list)
    risk_tiers: list[str] = field(default_factory=list)


def inventory(
    store: Store,
    *,
    search: str = "",
    owner: str = "",
    risk_tier: str = "",
    sort: str = "name",
    descending: bool = False,
    offset: int = 0,
    limit: int = 50,
    names: Collection[str] | None = None,
) -> InventoryPage:
    """One page of models matching the filters (name contains ``search``, exact owner/tier,
    one of ``names`` when given)."""
    if sort not in SORTS:
        raise InvalidInputError(f"cannot sort models by {sort!r}; use one of: {', '.join(SORTS)}.")
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidInputError(f"a page holds 1 to {MAX_PAGE} models from offset 0 or more.")
    models, events = schema.models, schema.registry_events
    newest_event = (
        select(func.max(events.c.time_ms)).where(events.c.model_id == models.c.id).scalar_subquery()
    )
    last_change = func.coalesce(newest_event, models.c.created_ms).label("last_change_ms")
    conditions: list[Any] = []
    if search:
        conditions.append(func.lower(models.c.name).contains(search.lower(), autoescape=True))
    if owner:
        conditions.append(models.c.owner == owner)
    if risk_tier:
        conditions.append(models.c.risk_tier == risk_tier)
    if names is not None:
        conditions.append(models.c.name.in_(list(names)))
    order_column = {
        "name": models.c.name,
        "owner": models.c.owner,
        "risk_tier": models.c.risk_tier,
        "latest_version": models.c.last_version,
        "last_change": last_change,
    }[sort]
    query = (
        select(models, last_change)
        .where(*conditions)
        .order_by(order_column.desc() if descending else order_column.asc(), models.c.name)
        .offset(offset)
        .limit(limit)
    )
    with store.db.read() as connection:
        total = connection.execute(
            select(func.count()).select_from(models).where(*conditions)
        ).scalar_one()
        rows = connection.execute(query).all()
        required = policy.current(connection).rules.required_approvals
        page = _page_rows(connection, rows, required)
        owners = connection.execute(select(models.c.owner).distinct().order_by(models.c.owner))
        tiers = connection.execute(
            select(models.c.risk_tier)
            .where(models.c.risk_tier.is_not(None))
            .distinct()
            .order_by(models.c.risk_tier)
        )
        return InventoryPage(
            page, total, offset, limit, list(owners.scalars()), list(tiers.scalars())
        )


def _page_rows(connection: Connection, rows: Sequence[Any], required: int) -> list[InventoryRow]:
    """The page's latest versions, decisions and aliases in three queries, not three per row.

    Decisions are folded by ``approvals.fold_decisions`` (the rule approvals use); aliases
    follow the registry's rule: the newest alias event of each alias decides.
    """
    found = [registry._model_record(row) for row in rows]
    ids = [model.id for model in found]
    versions = schema.model_versions
    latest = {
        row.model_id: registry._version_record(row._mapping)
        for row in connection.execute(
            registry._version_query().where(
                versions.c.model_id.in_(ids), versions.c.version == schema.models.c.last_version
            )
        )
    }
    decisions: dict[str, list[RegistryEvent]] = {model_id: [] for model_id in ids}
    aliases: dict[str, dict[str, int]] = {model_id: {} for model_id in ids}
    names = {model.id: model.name for model in found}
    for event in _events(connection, ids):
        model_id = event["model_id"]
        if event["kind"] in registry.ALIAS_KINDS:
            aliases[model_id][event["alias"]] = event["version"]
        elif model_id in latest and event["version"] == latest[model_id].version:
            decisions[model_id].append(registry._event_record(event, names[model_id]))
    page = []
    for model, row in zip(found, rows, strict=True):
        version = latest.get(model.id)
        status = None
        if version is not None:
            status = approvals.fold_decisions(model, version, decisions[model.id]).status(required)
        page.append(InventoryRow(model, version, status, aliases[model.id], row.last_change_ms))
    return page


def _events(connection: Connection, model_ids: list[str]) -> list[Any]:
    """Decision and alias events of the given models, oldest first."""
    events = schema.registry_events
    kinds = [*registry.STATUS_KINDS, *registry.ALIAS_KINDS]
    query = (
        select(events)
        .where(events.c.model_id.in_(model_ids), events.c.kind.in_(kinds))
        .order_by(events.c.seq)
    )
    return [row._mapping for row in connection.execute(query)]


@dataclass
class VersionSummary:
    version: VersionRecord
    status: str


@dataclass
class ModelOverview:
    """One model: its newest versions with their status, its aliases and their history."""

    model: ModelRecord
    versions: list[VersionSummary]
    total_versions: int
    aliases: dict[str, int]
    alias_history: list[RegistryEvent]


def model_overview(store: Store, name: str, versions: int = 100) -> ModelOverview:
    """The newest ``versions`` versions with their status, in one query for versions and one
    for their decisions (folded by ``approvals.fold_decisions``)."""
    table, events = schema.model_versions, schema.registry_events
    with store.db.read() as connection:
        model = registry.get_model_row(connection, name=name)
        required = policy.current(connection).rules.required_approvals
        oldest = max(model.last_version - versions + 1, 1)
        found = [
            registry._version_record(row._mapping)
            for row in connection.execute(
                registry._version_query()
                .where(table.c.model_id == model.id, table.c.version >= oldest)
                .order_by(table.c.version.desc())
            )
        ]
        decided: dict[int, list[RegistryEvent]] = {}
        for row in connection.execute(
            select(events)
            .where(
                events.c.model_id == model.id,
                events.c.version >= oldest,
                events.c.kind.in_(registry.STATUS_KINDS),
            )
            .order_by(events.c.seq)
        ):
            decided.setdefault(row.version, []).append(
                registry._event_record(row._mapping, model.name)
            )
        summaries = [
            VersionSummary(
                version,
                approvals.fold_decisions(model, version, decided.get(version.version, [])).status(
                    required
                ),
            )
            for version in found
        ]
        return ModelOverview(
            model,
            summaries,
            model.last_version,
            registry.current_aliases(connection, model.id),
            registry.read_events(connection, model, kinds=registry.ALIAS_KINDS),
        )
