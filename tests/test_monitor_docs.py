"""docs/monitoring.md's Python examples run as written, top to bottom, on a fresh store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import clew
from clew.client.remote_backend import RemoteBackend
from clew.errors import InvalidInputError

DOC = Path(__file__).parent.parent / "docs" / "monitoring.md"


def test_monitoring_doc_examples_run(client: clew.Client) -> None:
    """Through a server the Dask example is refused in one sentence: a client of a server
    cannot choose the scheduler (the server's operator does)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "docs_monitoring"}
    remote = isinstance(client._service, RemoteBackend)
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"docs/monitoring.md block {number}", "exec")
        if remote and "scheduler=" in block:
            with pytest.raises(InvalidInputError, match="CLEW_MONITOR_DASK_SCHEDULER"):
                exec(code, namespace)
            continue
        exec(code, namespace)
