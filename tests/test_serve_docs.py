"""The Python examples in docs/serving.md run as written, top to bottom, on a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

import clew

PAGE = Path(__file__).parent.parent / "docs" / "serving.md"


def test_serving_doc_examples_run(home: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2
    namespace: dict[str, object] = {"__name__": "docs_serving"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/serving.md block {number}", "exec"), namespace)
    assert [d.ref for d in clew.deployments("iris-api")] == ["iris/1"]
