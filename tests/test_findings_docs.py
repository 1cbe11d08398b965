"""The Python examples in docs/compliance.md and docs/cards.md run as written, top to bottom,
each document against a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("name", ["docs/compliance.md", "docs/cards.md"])
def test_doc_examples_run(name: str, client: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEW_USER", "docs")  # the examples switch users; restored afterwards
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(), flags=re.DOTALL)
    assert blocks, f"{name} has no python examples"
    namespace: dict[str, object] = {"__name__": "docs_" + Path(name).stem}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{name} block {number}", "exec"), namespace)
