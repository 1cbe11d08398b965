"""docs/monitoring.md's Python examples run as written, top to bottom, on a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).parent.parent / "docs" / "monitoring.md"


def test_monitoring_doc_examples_run(client: object) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "docs_monitoring"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/monitoring.md block {number}", "exec"), namespace)
