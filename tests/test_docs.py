"""The Python examples in the README and in docs/runs.md, lineage.md, and refs.md
run as written, top to bottom, each document against a fresh store."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import clew

ROOT = Path(__file__).parent.parent


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize(
    "name",
    [
        "README.md",
        "docs/runs.md",
        "docs/lineage.md",
        "docs/refs.md",
        "docs/monitoring-governance.md",
    ],
)
def test_doc_examples_run(name: str, home: Path) -> None:
    document = ROOT / name
    blocks = python_blocks(document.read_text())
    assert blocks, f"{name} has no python examples"
    namespace: dict[str, object] = {"__name__": "docs_" + Path(name).stem}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{name} block {number}", "exec"), namespace)
    # the examples used the fresh default store: a SQLite file, or CLEW_URI's database
    assert (home / "clew.db").is_file() or clew.get_client().uri == os.environ.get("CLEW_URI")
