"""Schemathesis against the server's own OpenAPI schema: no generated request may cause a 5xx.

Bounded to 10 cases per operation and mode in the normal suite; ``CLEW_FUZZ_EXAMPLES=40`` runs
four times as many for a deeper pass. The caller is an admin, so requests get past
authentication and exercise the services, with a real run and blob in the store for ids to
land on.

The suite runs in four passes (scripts/test: SQLite and PostgreSQL + S3, each with the embedded
and the remote client), and each pass fuzzes its own quarter of the (operation, mode) pairs
instead of repeating all of them: every operation gets positive cases on one backend and
negative cases on the other, and the four passes together cover every pair once.
``CLEW_FUZZ_SHARE=all`` runs every pair in one pass.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, openapi

from clew.domain import digests

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)

EXAMPLES = int(os.environ.get("CLEW_FUZZ_EXAMPLES", "10"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# This pass's share: (backend, client) -> share; pairs whose index is the share modulo 4 run.
PASSES = {
    ("sqlite", "embedded"): 0,
    ("postgres-s3", "embedded"): 1,
    ("sqlite", "remote"): 2,
    ("postgres-s3", "remote"): 3,
}


def this_pass_share() -> int | None:
    """The share of (operation, mode) pairs this pass fuzzes, or None for all of them."""
    if os.environ.get("CLEW_FUZZ_SHARE") == "all":
        return None
    backend = os.environ.get("CLEW_TEST_BACKEND", "sqlite")
    client = os.environ.get("CLEW_TEST_CLIENT", "embedded")
    return PASSES[(backend, client)]


def shared_pairs(operations: list[Any], share: int | None) -> list[tuple[Any, GenerationMode]]:
    """The pairs in ``share``: with pairs ordered (op0, +), (op0, -), (op1, +), ..., shares 0
    and 2 hold every operation's positive cases, 1 and 3 every operation's negative ones."""
    ordered = sorted(operations, key=lambda operation: operation.label)
    pairs = [(operation, mode) for operation in ordered for mode in MODES]
    return [pair for index, pair in enumerate(pairs) if share is None or index % 4 == share]


def test_no_generated_request_causes_a_server_error(server: RunningServer) -> None:
    token = server.user("root", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    with server.http(token) as http:
        http.post("/api/v1/runs", json={"name": "seed-run"})
        http.put(f"/api/v1/blobs/{digests.digest_bytes(b'x')}", content=b"x")
        document = http.get("/api/v1/openapi.json").json()
    schema = openapi.from_dict(document)
    session = requests.Session()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    for operation, mode in shared_pairs(operations, this_pass_share()):
        failures += _fuzz(operation, mode, server.url, headers, session)
    assert not failures, "\n".join(failures[:20])


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    session: requests.Session,
) -> list[str]:
    found: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def exercise(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        if response.status_code >= 500:
            found.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:200]} (query={case.query!r}, body={str(case.body)[:200]})"
            )

    try:
        exercise()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            found.append(f"{operation.label}: no valid request could be generated")
    return found


@pytest.mark.backend_independent
def test_the_four_passes_share_every_pair_once_and_each_backend_sees_every_operation() -> None:
    operations = [SimpleNamespace(label=f"GET /api/v1/op{index}") for index in range(7)]
    shares = {share: shared_pairs(operations, share) for share in PASSES.values()}
    everything = shared_pairs(operations, None)
    assert sorted(len(pairs) for pairs in shares.values()) == [3, 3, 4, 4]
    indexes = [everything.index(pair) for pairs in shares.values() for pair in pairs]
    assert sorted(indexes) == list(range(len(everything)))
    for backend in ("sqlite", "postgres-s3"):
        seen = [
            operation.label
            for client in ("embedded", "remote")
            for operation, _ in shares[PASSES[(backend, client)]]
        ]
        assert sorted(seen) == sorted(operation.label for operation in operations)
