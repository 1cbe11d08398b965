"""The model inventory: every registered model with its latest version's status and aliases.

Filtering, sorting and paging run in SQL over the ``models`` table, and only the rows of the
requested page have their status derived from their events, so a page of an inventory of
thousands of models costs the same as a page of ten. Status comes from the same code that
approvals and promotion use (``approvals.version_state``), never from a copy of the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

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
) -> InventoryPage:
    """One page of models matching the filters (name contains ``search``, exact owner/tier)."""
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
        page = [_row(connection, row, required) for row in rows]
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


def _row(connection: Any, row: Any, required: int) -> InventoryRow:
    model = registry.load_model(connection, model_id=row.id)
    latest = status = None
    if model.last_version:
        latest = registry.load_version(connection, model.name, model.last_version)
        status = approvals.version_state(connection, model, latest).status(required)
    aliases = registry.current_aliases(connection, model.id)
    return InventoryRow(model, latest, status, aliases, row.last_change_ms)


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
    """The newest ``versions`` versions (numbers are gapless, so each is one key lookup)."""
    with store.db.read() as connection:
        model = registry.load_model(connection, name=name)
        required = policy.current(connection).rules.required_approvals
        summaries = []
        for number in range(model.last_version, max(model.last_version - versions, 0), -1):
            found = registry.load_version(connection, name, number)
            state = approvals.version_state(connection, model, found)
            summaries.append(VersionSummary(found, state.status(required)))
        return ModelOverview(
            model,
            summaries,
            model.last_version,
            registry.current_aliases(connection, model.id),
            registry.load_events(connection, model, kinds=registry.ALIAS_KINDS),
        )
