"""Regulator exports through the SDK: the SR 11-7 inventory (a DataFrame, CSV or XLSX) and the
signed EU AI Act Annex IV pack of one version (see docs/compliance.md)."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from clew.domain.records import VersionRecord
from clew.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from clew.client.client import Client
    from clew.service.protocols import Backend

__all__ = ["annex_iv", "export_sr11_7", "sr11_7_inventory"]

VersionRef = str | VersionRecord
INVENTORY_FORMATS = ("csv", "xlsx")


class ExportsMixin:
    """Regulator exports on either backend."""

    if TYPE_CHECKING:
        _service: Backend

    def sr11_7_inventory(self) -> pd.DataFrame:
        """The model inventory, one row per model: purpose, owner, developer, validator, risk
        tier, validation status and date, next review, open findings, dependencies,
        limitations."""
        import pandas as pd

        from clew.service.exports import INVENTORY_COLUMNS

        rows = self._service.exports.sr11_7_inventory()
        return pd.DataFrame(rows, columns=INVENTORY_COLUMNS)

    def export_sr11_7(self, format: str = "csv") -> bytes:
        """The inventory as CSV or XLSX bytes (XLSX needs the exports extra)."""
        frame = self.sr11_7_inventory()
        if format == "csv":
            return bytes(frame.to_csv(index=False).encode())
        if format == "xlsx":
            return _xlsx(frame)
        raise InvalidInputError(
            f"cannot export the inventory as {format!r}; use one of {', '.join(INVENTORY_FORMATS)}."
        )

    def annex_iv(self, ref: VersionRef) -> dict[str, Any]:
        """The version's EU AI Act Annex IV pack: statements linked to their records, what a
        person must still write, and the store's signature over its digest."""
        return self._service.exports.annex_iv(ref.ref if isinstance(ref, VersionRecord) else ref)


def _xlsx(frame: pd.DataFrame) -> bytes:
    from clew.extras import require_extra

    require_extra("exports", "an XLSX inventory")
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "SR 11-7 inventory"
    sheet.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        sheet.append([_cell(value) for value in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    """A value as a spreadsheet cell: text that looks like a formula is kept as text."""
    if value is None or value != value:
        return None
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value if isinstance(value, int | float | str) else json.dumps(value)


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()


def sr11_7_inventory() -> pd.DataFrame:
    return _client().sr11_7_inventory()


def export_sr11_7(format: str = "csv") -> bytes:
    return _client().export_sr11_7(format)


def annex_iv(ref: VersionRef) -> dict[str, Any]:
    return _client().annex_iv(ref)
