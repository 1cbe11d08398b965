"""The inventory as a compliance dashboard: the filters, the validation states a model can be
in, and the CSV export of every model the filters match (not only the page shown)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

from clew.domain import findings as rules
from clew.domain import records
from clew.server.ui import monitoring
from clew.server.ui.pages import Page
from clew.service import inventory

REVIEW_STATES = (rules.OVERDUE, rules.REVALIDATION_REQUIRED, rules.NEVER_REVIEWED, rules.CURRENT)
CSV_COLUMNS = [
    "model",
    "owner",
    "risk_tier",
    "latest_version",
    "status",
    "aliases",
    "validation_state",
    "last_review",
    "next_review",
    "open_findings",
    "open_high_findings",
    "monitor",
    "open_violations",
    "last_violation",
]


@dataclass(frozen=True)
class Filters:
    q: str
    owner: str
    risk_tier: str
    review: str
    sort: str
    desc: bool


def inventory_csv(current: Page, pages: Callable[[int, int], inventory.InventoryPage]) -> str:
    """Every matching model as CSV, read page by page; cells that a spreadsheet would run as
    a formula are prefixed with a quote."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    offset = 0
    while True:
        found = pages(offset, inventory.MAX_PAGE)
        names = [row.model.name for row in found.rows]
        statuses = current.services.reviews.statuses_for(names)
        violations = current.services.reviews.last_violations(names)
        monitors = monitoring.summaries(current, found.rows)
        for row in found.rows:
            name = row.model.name
            review, monitor = statuses.get(name), monitors.get(name)
            last = review.last_review if review else None
            writer.writerow(
                _safe(value)
                for value in (
                    name,
                    row.model.owner,
                    row.model.risk_tier or "",
                    row.latest.version if row.latest else "",
                    row.status or "",
                    ", ".join(f"{a}={n}" for a, n in sorted(row.aliases.items())),
                    review.state if review else "",
                    records.ms_to_iso(last.reviewed_ms) if last else "",
                    review.to_dict()["next_due"] or "" if review else "",
                    review.open_findings if review else 0,
                    review.blocking_findings if review else 0,
                    monitor.outcome if monitor else "",
                    monitor.open_violations if monitor else 0,
                    records.ms_to_iso(violations[name]) if name in violations else "",
                )
            )
        offset += inventory.MAX_PAGE
        if offset >= found.total:
            return buffer.getvalue()


def _safe(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
