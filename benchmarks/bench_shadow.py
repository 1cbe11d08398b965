"""Shadow deployments: what a shadow costs the champion's answers.

A LogisticRegression champion is served by ``create_inference_app`` with and without a shadow
(a DecisionTree challenger answering a copy of each request in ``ShadowSender``'s own
process, captured, its call pairs recorded). Requests of 10 rows are sent one after another
through Starlette's in-process test client, alternating blocks of 200 between the two apps so
machine load falls on both alike. Reported: the champion's p50 and p99 wall latency per
request with and without the shadow (target: p99 with ≤ 1.05× without) and this process's
CPU per request (the shadow's process not included: what the champion's process pays to offer
each copy).

    uv run --group bench python benchmarks/bench_shadow.py [--quick] [--requests N]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from report import Result, finish, parser, percentile
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import clew
from clew.client.serving import create_inference_app
from clew.client.shadowing import ShadowSender

BLOCK = 200
TARGET = 1.05


def train(client: clew.Client, name: str, model: object, frame: pd.DataFrame) -> str:
    target = (frame["f0"] + frame["f1"] > 0).astype(int)
    with client.start_run("bench", name) as run:
        artifact = run.log_model(model.fit(frame, target), name=name)  # type: ignore[attr-defined]
    return client.register_model(artifact, "bench").ref


def timed(api: TestClient, body: dict[str, object], wall: list[float], cpu: list[float]) -> None:
    started, started_cpu = time.perf_counter(), time.process_time()
    response = api.post("/predict", json=body)
    wall.append((time.perf_counter() - started) * 1000)
    cpu.append((time.process_time() - started_cpu) * 1000)
    assert response.status_code == 200, response.text


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--requests", type=int, help="requests per app (default 4000)")
    options = arguments.parse_args()
    requests = options.requests or (800 if options.quick else 4000)
    generator = np.random.default_rng(0)
    frame = pd.DataFrame(generator.normal(size=(2000, 10)), columns=[f"f{i}" for i in range(10)])
    body = {"inputs": frame.head(10).to_dict(orient="records")}
    with tempfile.TemporaryDirectory(prefix="clew-bench-shadow-") as scratch:
        client = clew.connect(str(Path(scratch) / "home"))
        champion = client.load_model(train(client, "lr", LogisticRegression(), frame))
        challenger = client.load_model(train(client, "tree", DecisionTreeClassifier(), frame))
        serving = client.start_deployment(champion, "bench")
        beside = client.start_deployment(
            challenger, "bench", role="shadow", champion=serving.deployment
        )
        sender = ShadowSender(challenger, beside.deployment.id)
        alone = TestClient(create_inference_app(champion))
        shadowed = TestClient(create_inference_app(champion, shadow=sender))
        walls: dict[str, list[float]] = {"alone": [], "shadowed": []}
        cpus: dict[str, list[float]] = {"alone": [], "shadowed": []}
        for api in (alone, shadowed):
            for _ in range(50):  # warm-up
                timed(api, body, [], [])
        for block in range(requests // BLOCK):
            order = [(alone, "alone"), (shadowed, "shadowed")]
            for api, key in order if block % 2 == 0 else reversed(order):
                for _ in range(BLOCK):
                    timed(api, body, walls[key], cpus[key])
        sender.close()
        stats = sender.stats()
        client.flush_captures()
        client.stop_deployment(beside)
        client.stop_deployment(serving)
        client.close()
    note = (
        f"{requests} requests of 10 rows each; shadow answered {stats['answered']}, "
        f"dropped {stats['dropped']}"
    )
    results = [
        Result(
            "shadow",
            "champion p99 per request, with a shadow vs without",
            "ms",
            False,
            percentile(walls["shadowed"], 0.99),
            percentile(walls["alone"], 0.99),
            "the champion alone",
            target_ratio=1 / TARGET,
            note=note,
        ),
        Result(
            "shadow",
            "champion p50 per request, with a shadow vs without",
            "ms",
            False,
            percentile(walls["shadowed"], 0.5),
            percentile(walls["alone"], 0.5),
            "the champion alone",
        ),
        Result(
            "shadow",
            "champion process CPU per request",
            "ms",
            False,
            float(np.mean(cpus["shadowed"])),
            float(np.mean(cpus["alone"])),
            "the champion alone",
        ),
    ]
    finish("Shadow deployments", results, options.json)


if __name__ == "__main__":
    main()
