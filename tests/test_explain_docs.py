"""The Python examples in docs/explain.md run as written, top to bottom, against a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

import clew

ROOT = Path(__file__).parent.parent


def test_explain_page_examples_run(home: Path) -> None:
    text = (ROOT / "docs/explain.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "docs_explain"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/explain.md block {number}", "exec"), namespace)
    assert [r["kind"] for r in clew.version_reports("credit/1")] == ["bias", "explanation"]
