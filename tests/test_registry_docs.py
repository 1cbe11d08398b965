"""docs/governance.md's Python examples run, top to bottom, against a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

import clew

DOC = Path(__file__).parent.parent / "docs" / "governance.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_governance_examples_run(home: Path) -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 8
    namespace: dict[str, object] = {"__name__": "governance_doc"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)

    history = clew.alias_history("cancer", "production")
    assert history["kind"].tolist() == ["alias_rollback", "alias_set", "alias_set"]
    assert clew.get_version("cancer@production").version == 2
    assert clew.get_policy()["version"] == 2  # the second requires registered keys
    signed = clew.version_status("cancer/4")
    assert (signed["approved_by"], signed["signatures"][0]["state"]) == (["bob"], "verified")
    assert clew.version_status("cancer/1")["status"] == "rejected"
    assert clew.version_status("cancer-tuned/1")["approvals"] == 0  # carol uploaded it
