"""A runId's clew run id: ``ulid_from_int`` (base32 in C, letters swapped) writes the same 26
letters as the ULID definition, five bits at a time from the top, and ``uuid_for`` inverts it."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clew.domain.openlineage import run_id_for, ulid_from_int, uuid_for

pytestmark = pytest.mark.backend_independent  # touches no store

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_by_definition(value: int) -> str:
    return "".join(ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_the_ulid_is_the_definitions(value: int) -> None:
    assert ulid_from_int(value) == ulid_by_definition(value)


@pytest.mark.parametrize("value", [0, 1, 31, 32, 2**127, 2**128 - 1])
def test_the_ulid_at_the_edges(value: int) -> None:
    assert ulid_from_int(value) == ulid_by_definition(value)


@given(st.uuids())
def test_a_run_id_goes_back_to_its_run_uuid(run_uuid: uuid.UUID) -> None:
    assert uuid_for(run_id_for(str(run_uuid))) == str(run_uuid)
