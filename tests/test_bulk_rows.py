"""Bulk inserts bind each row's values by position, in their columns' order."""

from __future__ import annotations

import pytest

from clew.service import bulk_rows

pytestmark = pytest.mark.backend_independent


def test_a_tail_naming_a_parameter_is_refused_where_the_statement_is_built() -> None:
    """``:created_ms`` in the tail would be bound to whichever column's value came next."""
    tail = " ON CONFLICT (source_id) DO UPDATE SET created_ms = :created_ms"
    with pytest.raises(ValueError, match="binds by position; its tail names a parameter"):
        bulk_rows.insert("edges", bulk_rows.EDGE_COLUMNS, tail)


def test_a_tail_without_parameters_is_kept() -> None:
    statement = bulk_rows.insert("edges", bulk_rows.EDGE_COLUMNS, " ON CONFLICT DO NOTHING")
    assert isinstance(statement, bulk_rows.BulkInsert)
