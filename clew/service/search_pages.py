"""Cursor pagination for run search: a page token says where the last page stopped.

The token is keyset, not an offset: it carries the sort-key values of the last run returned,
and the next page asks the database for runs *after* that row in the same order. A deep page
therefore costs what the first page costs (an offset would make the database produce and
discard every earlier row, which is what the fair-use bounds forbid), and runs created while a
caller pages cannot shift later pages. The token also carries a digest of the query it belongs
to, so a token replayed against a different filter or ordering is refused instead of silently
skipping runs. It is opaque to callers but not secret: forging one only moves where a page
starts within runs the caller may read anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_

from clew.domain.digests import digest_json, hex_part
from clew.errors import InvalidInputError

MAX_TOKEN_LENGTH = 20_000


@dataclass(frozen=True)
class OrderKey:
    """One sort key of a search: an SQL expression, its direction, and whether it is the
    "is this value missing" flag that puts runs without the key last."""

    expression: ColumnElement[Any]
    descending: bool
    is_null_flag: bool = False


def query_digest(
    filter_text: str | None, order_by: Sequence[str] | None, experiments: Sequence[str] | None
) -> str:
    """What a token is bound to: the filter, the ordering and the experiments searched."""
    query = [filter_text, list(order_by or []), None if experiments is None else list(experiments)]
    return hex_part(digest_json(query))[:32]


def encode_token(digest: str, last_row: Sequence[Any]) -> str:
    text = json.dumps({"query": digest, "after": list(last_row)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str, digest: str, keys: int) -> list[Any]:
    """The last row's key values, or one sentence saying why the token cannot be used."""
    start_again = "run the search again without a page token"
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidInputError(f"the page token is empty or too long; {start_again}.")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidInputError(
            f"the page token is not one clew returned; {start_again}."
        ) from None
    after = decoded.get("after") if isinstance(decoded, dict) else None
    if not isinstance(after, list) or len(after) != keys:
        raise InvalidInputError(f"the page token is not one clew returned; {start_again}.")
    if decoded.get("query") != digest:
        raise InvalidInputError(
            "the page token belongs to a search with a different filter, ordering or "
            f"experiments; {start_again}."
        )
    return after


def after_row(keys: Sequence[OrderKey], last: Sequence[Any]) -> ColumnElement[bool]:
    """Runs that sort after ``last``: for some key, every earlier key is equal and this one
    is past it (the lexicographic order the ORDER BY clause uses, NULL flags included)."""
    branches = []
    for index, key in enumerate(keys):
        past = _past(key, last[index])
        if past is None:
            continue
        equal = [_equal(earlier, last[i]) for i, earlier in enumerate(keys[:index])]
        branches.append(and_(*equal, past))
    return or_(*branches) if branches else false()


def _equal(key: OrderKey, value: Any) -> ColumnElement[bool]:
    if key.is_null_flag:
        return key.expression if value else ~key.expression
    if value is None:
        # The flag before this key already pinned the NULL group; within it all are tied.
        return key.expression.is_(None)
    same: ColumnElement[bool] = key.expression == value
    return same


def _past(key: OrderKey, value: Any) -> ColumnElement[bool] | None:
    if key.is_null_flag:
        # False (has a value) sorts before True (missing): only a present value has
        # missing ones after it.
        return None if value else key.expression
    if value is None:
        return None
    past: ColumnElement[bool] = key.expression < value if key.descending else key.expression > value
    return past
