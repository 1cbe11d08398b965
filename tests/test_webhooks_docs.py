"""docs/webhooks.md's Python examples run, top to bottom, against a fresh store: a receiver that
verifies signatures with the standard library starts a deployment when production moves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import clew

DOC = Path(__file__).parent.parent / "docs" / "webhooks.md"


def test_webhooks_examples_run(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The document allows 127.0.0.1 for its local receiver; set here first so it is undone after.
    monkeypatch.setenv("CLEW_WEBHOOK_ALLOWED_NETWORKS", "")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 4
    namespace: dict[str, object] = {"__name__": "webhooks_doc"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    assert namespace["deployments"] == ["cancer/1"]
    log = clew.webhook_deliveries()
    assert log["kind"].tolist() == ["alias_set", "approved"]
    assert set(log["status"]) == {"delivered"} and set(log["attempts"]) == {1}
