"""The Python examples of docs/integrations.md (OpenLineage, MLflow, DVC, PROV) run as written,
top to bottom, against a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

import clew

PAGE = Path(__file__).parent.parent / "docs" / "integrations.md"


def test_the_integrations_page_runs(home: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) == 4
    namespace: dict[str, object] = {"__name__": "docs_integrations"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"integrations.md block {number}", "exec"), namespace)
    assert clew.get_client().search_runs().shape[0] == 3
