"""The Python examples in docs/pipelines.md run as written, top to bottom, on a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

import clew

DOC = Path(__file__).parent.parent / "docs" / "pipelines.md"


def test_pipeline_doc_examples_run(client: clew.Client) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {"__name__": "docs_pipelines"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/pipelines.md block {number}", "exec"), namespace)
    assert clew.show_pipeline("churn").steps[1].status == "FINISHED"
