"""Both backends satisfy every service protocol in ``clew/service/protocols.py``.

Each protocol method is compared, by ``inspect.signature``, with the embedded and the remote
implementation (parameter names, kinds and defaults; an implementation may add a trailing
parameter that has a default). The types are mypy's part: ``clew.client.client._backend``
returns either backend as a ``protocols.Backend``, so ``mypy --strict clew`` checks every
service of both against its protocol.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

import pytest

from clew.client.embedded import EmbeddedBackend
from clew.client.remote_backend import RemoteBackend
from clew.service import protocols

# A protocol member that is a property names the protocol of the object it returns.
SERVICE_PROTOCOLS = {
    name: typing.get_type_hints(member.fget)["return"]
    for name, member in vars(protocols.Backend).items()
    if isinstance(member, property) and name not in ("actor", "store")
}


def _members(protocol: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in vars(protocol).items()
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


def drift(protocol: type, implementation: object) -> list[str]:
    """How ``implementation`` differs from ``protocol``: missing members, or methods whose
    parameters differ in name, kind or default (extra trailing defaulted ones are allowed)."""
    found = []
    for name, member in _members(protocol).items():
        # Looked up on the class first: reading a remote property would ask the server.
        if not hasattr(type(implementation), name) and name not in vars(implementation):
            found.append(f"{name} is missing")
            continue
        if isinstance(member, property):
            continue
        wanted = list(inspect.signature(member).parameters.values())[1:]
        actual = list(inspect.signature(getattr(implementation, name)).parameters.values())
        shape = [(p.name, p.kind, p.default) for p in actual[: len(wanted)]]
        extra = [p for p in actual[len(wanted) :] if p.default is inspect.Parameter.empty]
        if shape != [(p.name, p.kind, p.default) for p in wanted] or extra:
            found.append(f"{name}{inspect.signature(member)} differs from {name}{actual}")
    return found


@pytest.fixture
def backends(tmp_path: Path) -> typing.Iterator[list[protocols.Backend]]:
    """Both backends; the remote one is never asked anything, so no server needs to run."""
    embedded = EmbeddedBackend(str(tmp_path / "store"), create=True)
    remote = RemoteBackend("http://127.0.0.1:9", token="unused")
    yield [embedded, remote]
    embedded.close()
    remote.close()


def test_every_service_of_both_backends_has_its_protocols_methods(
    backends: list[protocols.Backend],
) -> None:
    assert set(SERVICE_PROTOCOLS) == {
        "runs",
        "artifacts",
        "lineage",
        "registry",
        "approvals",
        "promotion",
        "policies",
        "predictions",
        "user_keys",
        "sessions",
        "audit",
        "webhooks",
        "monitor_runs",
        "monitor_schedules",
        "monitoring",
        "deployments",
        "shadows",
        "openlineage",
        "findings",
        "reviews",
        "cards",
        "exports",
        "mlflow_import",
        "dvc_import",
        "reproductions",
        "pipelines",
        "explanations",
    }
    for backend in backends:
        assert drift(protocols.Backend, backend) == [], type(backend).__name__
        assert drift(protocols.StoreView, backend.store) == []
        for name, protocol in SERVICE_PROTOCOLS.items():
            service = getattr(backend, name)
            assert drift(protocol, service) == [], f"{type(service).__name__} vs {name}"


def test_a_drifted_signature_or_missing_method_is_found() -> None:
    class Drifted:
        def get_policy(self) -> None: ...

        def set_policy(self, text: str, actor: str) -> int:
            return 0

    class Missing:
        def get_policy(self) -> None: ...

    assert [problem.split("(")[0] for problem in drift(protocols.Policies, Drifted())] == [
        "set_policy"
    ]
    assert drift(protocols.Policies, Missing()) == ["set_policy is missing"]
