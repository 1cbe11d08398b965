"""The Python examples in docs/reproduce.md run as written, top to bottom, on a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

import clew

DOC = Path(__file__).parent.parent / "docs" / "reproduce.md"


def test_reproduce_doc_examples_run(client: clew.Client) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {"__name__": "docs_reproduce"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/reproduce.md block {number}", "exec"), namespace)
    assert clew.version_status("iris/1")["version"] == 1
