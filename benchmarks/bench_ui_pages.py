"""Web UI server time: the model list and the version page with 10k versions in the store.

The store holds ``--models`` models with ``--per-model`` versions each plus one model with
``--big`` versions (10,000 versions in all by default), a tenth of them approved and a few
promoted. Each page is requested through the real ASGI app in-process (no network), so the
figure is the server's own time: routing, queries, templating. Budget: 200 ms per page.

    uv run python benchmarks/bench_ui_pages.py [--models 1000] [--per-model 9] [--big 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

import clew
from clew.server.ui import create_ui_app
from clew.service.approvals import ApprovalService
from clew.service.promotion import PromotionService
from clew.service.registry import RegistryService

BUDGET_MS = 200.0
REQUESTS = 25


def build(directory: Path, models: int, per_model: int, big: int) -> clew.Client:
    os.environ["CLEW_USER"] = "alice"
    client = clew.Client(str(directory / "store"))
    with client.start_run("bench", "train", capture_code=False) as run:
        path = directory / "model.bin"
        path.write_bytes(b"a model")
        artifact = run.log_output(path, name="bench-model", type="model")
    registry = RegistryService(client.store)
    approvals = ApprovalService(client.store)
    promotion = PromotionService(client.store)
    source = f"artifact:{artifact.id}"
    for number in range(models):
        name = f"model-{number:04d}"
        registry.create_model(name, "alice", owner=f"team-{number % 7}", risk_tier="medium")
        for _ in range(per_model):
            registry.register(name, source, "alice")
        if number % 10 == 0:
            approvals.approve(f"{name}/{per_model}", "bob", "validated")
            promotion.promote(f"{name}/{per_model}", "production", "bob", "best so far")
    for _ in range(big):
        registry.register("big", source, "alice")
    return client


def measure(http: TestClient, path: str) -> tuple[float, float]:
    http.get(path).raise_for_status()
    timings = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        http.get(path).raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--models", type=int, default=1000)
    options.add_argument("--per-model", type=int, default=9)
    options.add_argument("--big", type=int, default=1000)
    arguments = options.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        started = time.perf_counter()
        client = build(Path(temp), arguments.models, arguments.per_model, arguments.big)
        versions = arguments.models * arguments.per_model + arguments.big
        print(f"built {versions} versions in {time.perf_counter() - started:.0f} s")
        http = TestClient(create_ui_app(client), base_url="http://127.0.0.1")
        middle = f"model-{arguments.models // 2:04d}"
        pages = {
            "model list": "/ui/models",
            "model list, newest change first": "/ui/models?sort=last_change&desc=true",
            "model list, filtered": "/ui/models?q=model-05&owner=team-3",
            "model list, last page": f"/ui/models?offset={arguments.models - 50}",
            "version page": f"/ui/models/{middle}/versions/{arguments.per_model}",
            "version page (model with many versions)": f"/ui/models/big/versions/{arguments.big}",
            "model page (model with many versions)": "/ui/models/big",
        }
        print(f"{'page':45} {'median ms':>10} {'p95 ms':>8}  budget {BUDGET_MS:.0f} ms")
        for label, path in pages.items():
            median, p95 = measure(http, path)
            verdict = "ok" if p95 <= BUDGET_MS else "OVER"
            print(f"{label:45} {median:10.1f} {p95:8.1f}  {verdict}")
        client.close()


if __name__ == "__main__":
    main()
