"""SQL that means the same on SQLite and PostgreSQL, for comparisons on text columns.

Params and tags are stored as text. A filter such as ``params.lr > 0.05`` compares the value
as a number where it is one and is false where it is not; ``CAST(value AS REAL)`` would read
``'abc'`` as 0 on SQLite and abort the whole query on PostgreSQL. Text is ordered by code
point on both (PostgreSQL's ``COLLATE "C"``; SQLite's default), and ``lower()`` folds ASCII
letters only, as SQLite's does.
"""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

NUMBER_PATTERN = r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?"
NUMBER_MAX_LENGTH = 100  # longer text is never read as a number (keeps PostgreSQL's cast safe)
_NUMBER = re.compile(NUMBER_PATTERN)
_SMALLEST, _LARGEST = Decimal("1e-300"), Decimal("1e300")
_SQLITE_FUNCTION = "clew_number"


def number_or_none(text: object) -> float | None:
    """``text`` as a float when it is a plain decimal numeral (``0.05``, ``-3``, ``1e-4``)
    of at most 100 characters whose magnitude is 0 or within 1e-300 … 1e300, else None."""
    if not isinstance(text, str) or len(text) > NUMBER_MAX_LENGTH:
        return None
    if not _NUMBER.fullmatch(text):
        return None
    value = Decimal(text)
    if value != 0 and not _SMALLEST <= abs(value) <= _LARGEST:
        return None
    return float(value)


def register_sqlite_functions(connection: sqlite3.Connection) -> None:
    """The SQLite half of ``NumberOf``: PostgreSQL computes the same in SQL."""
    connection.create_function(_SQLITE_FUNCTION, 1, number_or_none, deterministic=True)


class NumberOf(FunctionElement[float]):
    """A text column's value as a number, or NULL where it is not one (``number_or_none``)."""

    type = Float()
    inherit_cache = True
    name = "number_of"


class ByteOrder(FunctionElement[str]):
    """A text expression compared and sorted by code point on both backends."""

    type = Text()
    inherit_cache = True
    name = "byte_order"


class AsciiLower(FunctionElement[str]):
    """``lower()`` that folds A-Z only, like SQLite's, whatever PostgreSQL's locale."""

    type = Text()
    inherit_cache = True
    name = "ascii_lower"


@compiles(NumberOf, "sqlite")
def _number_sqlite(element: NumberOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{_SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"


@compiles(NumberOf, "postgresql")
def _number_postgres(element: NumberOf, compiler: SQLCompiler, **kw: Any) -> str:
    # CASE evaluates in order, so the casts only ever see text they accept: at most 100
    # characters and a three-digit exponent always fit numeric; the magnitude test keeps the
    # float8 cast from overflowing or underflowing.
    value = compiler.process(element.clauses, **kw)
    exact = f"CAST({value} AS numeric)"
    return (
        f"(CASE WHEN length({value}) <= {NUMBER_MAX_LENGTH} "
        f"AND {value} ~ '^{NUMBER_PATTERN}$' THEN "
        f"CASE WHEN {exact} = 0 OR abs({exact}) BETWEEN 1e-300 AND 1e300 "
        f"THEN CAST({exact} AS double precision) END END)"
    )


@compiles(ByteOrder)
def _byte_order(element: ByteOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(ByteOrder, "postgresql")
def _byte_order_postgres(element: ByteOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)} COLLATE "C")'


@compiles(AsciiLower)
def _ascii_lower(element: AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(AsciiLower, "postgresql")
def _ascii_lower_postgres(element: AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f'lower(({compiler.process(element.clauses, **kw)}) COLLATE "C")'
