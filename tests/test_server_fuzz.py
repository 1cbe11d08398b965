"""Schemathesis against the server's own OpenAPI schema: no generated request may cause a 5xx.

Bounded to 10 positive and 10 negative cases per operation (~700 requests) in the normal
suite; ``CLEW_FUZZ_EXAMPLES=40`` runs ~2,800 for a deeper pass. The caller is an admin, so
requests get past authentication and exercise the services, with a real run and blob in the
store for ids to land on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, openapi

from clew.domain import digests

if TYPE_CHECKING:
    from server_fixtures import RunningServer

pytest_plugins = ("server_fixtures",)

EXAMPLES = int(os.environ.get("CLEW_FUZZ_EXAMPLES", "10"))


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
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
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
