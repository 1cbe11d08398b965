"""The server's JSON depth bound (``limits.check_depth``) refuses exactly the values nested
deeper than its limit, whatever mix of objects, arrays and scalars they hold: checked against
the plain recursive definition of depth on generated values and at the boundaries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clew.errors import InvalidInputError
from clew.server.limits import check_depth, check_text_depth

pytestmark = pytest.mark.backend_independent  # touches no store

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=3)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=20,
)


def depth(value: Any) -> int:
    """A scalar or an empty container is one level; a container, one more than its deepest item."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return 1 + max((depth(item) for item in items), default=0)


def refused(value: Any, limit: int) -> bool:
    try:
        assert check_depth(value, "the value", limit) is value
    except InvalidInputError as error:
        assert str(error) == (
            f"the value is nested deeper than {limit} levels; flatten it or store it as an "
            "artifact."
        )
        return True
    return False


@given(values, st.integers(min_value=1, max_value=6))
def test_refused_exactly_when_deeper_than_the_limit(value: Any, limit: int) -> None:
    assert refused(value, limit) == (depth(value) > limit)


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        (7, 1, False),
        ([], 1, False),
        ({}, 1, False),
        ([7], 1, True),  # a scalar one level below a container at the limit
        ({"a": None}, 1, True),
        ([[]], 2, False),
        ([[7]], 2, True),
        ({"a": [{"b": 7}]}, 3, True),
        ({"a": [{"b": 7}]}, 4, False),
        (7, 0, True),
    ],
)
def test_boundaries(value: Any, limit: int, expected: bool) -> None:
    assert refused(value, limit) is expected


dumped = st.sampled_from(
    [
        lambda value: json.dumps(value),
        lambda value: json.dumps(value, ensure_ascii=False),
        lambda value: json.dumps(value, indent=1, separators=(" , ", " : ")),
    ]
)
texts = st.text(alphabet=st.sampled_from('ab"\\[]{}:, é\n'), max_size=4)
values_with_brackets_in_strings = st.recursive(
    st.none() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=20,
)


@given(values_with_brackets_in_strings, dumped, st.integers(min_value=1, max_value=6))
def test_the_text_check_refuses_what_the_value_check_refuses(
    value: Any, dump: Any, limit: int
) -> None:
    """``check_text_depth`` reads depth off the JSON text, whatever brackets, quotes and
    escapes its strings hold and however it is spaced, and agrees with ``check_depth``."""
    text = dump(value).encode()
    try:
        check_text_depth(text, json.loads(text), "the value", limit)
    except InvalidInputError:
        assert depth(value) > limit
    else:
        assert depth(value) <= limit


def test_the_text_check_of_other_encodings_walks_the_value() -> None:
    text = json.dumps([[["x"]]]).encode("utf-16")
    with pytest.raises(InvalidInputError, match="nested deeper than 2 levels"):
        check_text_depth(text, json.loads(text), "the value", 2)
    assert check_text_depth(text, [[["x"]]], "the value", 4) == [[["x"]]]
