"""The remote client imports no SQLAlchemy, no store and no server code.

A user of a clew server installs and loads only what talks to it: importing the remote backend
in a fresh interpreter must not load SQLAlchemy, any ``clew.store`` or ``clew.server`` module,
or a ``clew.service`` module (those reach the store; ``service/protocols.py`` is types only).
"""

from __future__ import annotations

import json
import subprocess
import sys

ALLOWED_SERVICE_MODULES = {"clew.service", "clew.service.protocols"}
FORBIDDEN_PREFIXES = ("sqlalchemy", "clew.store", "clew.server", "clew.service")


def loaded_after_import(module: str) -> list[str]:
    """Every module a fresh interpreter holds after ``import module``."""
    script = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    answer = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(answer.stdout)
    return loaded


def forbidden(loaded: list[str]) -> list[str]:
    return [
        name
        for name in loaded
        if name.startswith(FORBIDDEN_PREFIXES) and name not in ALLOWED_SERVICE_MODULES
    ]


def test_the_shared_values_and_protocols_load_no_store() -> None:
    """What both backends share (``domain/``, ``service/protocols.py``) stays below the store."""
    shared = (
        "clew.service.protocols, clew.domain.artifacts, clew.domain.keys, clew.domain.lineage, "
        "clew.domain.policy, clew.domain.roles, clew.domain.run_fields, clew.domain.sessions, "
        "clew.domain.trace, clew.domain.audit, clew.domain.signatures, clew.domain.capture_proofs, "
        "clew.domain.checkpoint_exports, clew.domain.object_urls"
    )
    assert forbidden(loaded_after_import(shared)) == []


def test_the_rule_finds_a_store_import() -> None:
    assert "clew.store.metadata" in forbidden(loaded_after_import("clew.client.embedded"))


def test_the_remote_client_loads_no_store_server_or_sqlalchemy() -> None:
    assert forbidden(loaded_after_import("clew.client.remote_backend")) == []
