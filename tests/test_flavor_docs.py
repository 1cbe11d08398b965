"""docs/models.md's examples run as written, top to bottom, against a fresh store; a block
that starts with ``# needs: <module>`` is skipped where that module is not installed."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_the_models_page_examples_run(home: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    pytest.importorskip("skl2onnx")
    monkeypatch.chdir(tmp_path)  # the examples write their files in the working directory
    monkeypatch.setattr(sys, "path", list(sys.path))
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs/models.md").read_text(), re.DOTALL)
    namespace: dict[str, object] = {"__name__": "docs_models"}
    ran = 0
    for number, block in enumerate(blocks, 1):
        needs = re.match(r"# needs: (\w+)", block)
        if needs and importlib.util.find_spec(needs.group(1)) is None:
            continue
        exec(compile(block, f"docs/models.md block {number}", "exec"), namespace)
        ran += 1
    assert ran >= 4
    sys.modules.pop("churn_rules", None)
