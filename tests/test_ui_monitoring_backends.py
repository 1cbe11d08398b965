"""The monitoring page over the store of every backend: PostgreSQL + S3, and through a server.

The store is the ``client`` fixture's (see tests/conftest.py), populated as
tests/test_ui_monitoring.py says (two real monitor runs of a real model); the page's reports
are read back from that store's blobs (S3 on postgres-s3). The browser checks live in
tests/test_ui_monitoring.py; this file is in scripts/test's remote passes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from test_docs import python_blocks
from test_ui_monitoring import FEATURES, MODEL, populate

import clew
from clew.server.ui import create_ui_app
from clew.store.location import Store

ROOT = Path(__file__).parent.parent


def test_the_page_reads_the_runs_on_any_backend(client: clew.Client, store: Store) -> None:
    """The reports the page draws are read back from the store's blobs (S3 on postgres-s3)."""
    populate(client, store)
    http = TestClient(create_ui_app(store), base_url="http://127.0.0.1")
    page = http.get(f"/ui/models/{MODEL}/monitoring")
    assert page.status_code == 200
    assert "PSI of spend" in page.text and 'data-subject="features / spend"' in page.text
    assert page.text.count('class="spark"') >= len(FEATURES) * 4
    inventory = http.get("/ui/models").text
    assert 'data-outcome="failed"' in inventory and "1 open violation" in inventory


def test_the_docs_example_runs_and_its_page_shows_the_failing_window(store: Store) -> None:
    """docs/monitoring-ui.md's example, run as written on the default store."""
    document = ROOT / "docs" / "monitoring-ui.md"
    namespace: dict[str, object] = {"__name__": "docs_monitoring_ui"}
    for number, block in enumerate(python_blocks(document.read_text()), 1):
        exec(compile(block, f"monitoring-ui.md block {number}", "exec"), namespace)
    http = TestClient(create_ui_app(store), base_url="http://127.0.0.1")
    page = http.get("/ui/models/churn/monitoring")
    assert page.status_code == 200 and "model_quality_check" in page.text
    assert page.text.count("<tr data-key=") > 5
