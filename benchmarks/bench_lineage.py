"""Lineage walks: upstream/downstream at depth 10 in a 1M-node graph, clew vs ML Metadata.

The graph (see ``lineage_shape.py``: chains of runs with fan-in 3, depth 30 runs) is
bulk-loaded straight into clew's ``contexts``, ``runs``, ``artifacts`` and ``edges`` tables
with SQLAlchemy Core — building a million nodes through the SDK would take far longer than the
measurement. The timed call is the public SDK: ``client.lineage.upstream("artifact:<id>",
max_depth=10)`` and ``downstream(...)``, from 200 random output artifacts, p50 and p95.

ML Metadata (the peer) needs protobuf < 5, which conflicts with MLflow in this project's
environment, so it runs in its own virtualenv (``--mlmd-python``, made by ``run_all.py`` with
``uv venv`` + ``uv pip install ml-metadata``); the same graph is loaded through its own batch
API (``put_artifacts``/``put_executions``/``put_events``) and walked with
``get_lineage_subgraph(max_num_hops=10, direction=UPSTREAM|DOWNSTREAM)``.

    uv run python benchmarks/bench_lineage.py [--nodes 1000000] [--mlmd-python PATH] [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lineage_shape import EXPERIMENTS, OUTPUT, RAW, RUN, Shape, digest, node_id
from report import Result, finish, latencies_ms, parser, percentile, stopwatch

import clew
from clew.store import schema

DEPTH = 10
STARTS = 200
TARGET_P50_MS = 10.0
CHUNK = 20_000
CREATED_MS = 1_700_000_000_000
HERE = Path(__file__).parent


def step_rows(shape: Shape, chain: int, stage: int, experiments: list[str]) -> dict[str, list]:
    """The artifact, run and edge rows for one step of one chain."""
    run_id = node_id(shape.number(chain, stage, RUN))
    artifacts = [
        _artifact(shape.number(chain, stage, RAW), "dataset", f"raw-{chain}-{stage}"),
        _artifact(shape.number(chain, stage, OUTPUT), "model", f"out-{chain}-{stage}"),
    ]
    run = {
        "id": run_id,
        "experiment_id": experiments[chain % EXPERIMENTS],
        "name": f"step-{stage}",
        "kind": "training",
        "status": "FINISHED",
        "user_name": "bench",
        "start_ms": CREATED_MS + stage,
        "end_ms": CREATED_MS + stage + 1,
        "properties": "{}",
    }
    edges = [
        _edge(node_id(number), "artifact", run_id, "run", "ContributedTo")
        for number in shape.inputs(chain, stage)
    ]
    edges.append(_edge(run_id, "run", artifacts[1]["id"], "artifact", "Produced"))
    edges.append(
        _edge(run_id, "run", experiments[chain % EXPERIMENTS], "context", "AssociatedWith")
    )
    return {"artifacts": artifacts, "runs": [run], "edges": edges}


def _artifact(number: int, type_: str, name: str) -> dict[str, Any]:
    return {
        "id": node_id(number),
        "type": type_,
        "name": name,
        "digest": digest(number),
        "size": 1,
        "properties": "{}",
        "created_ms": CREATED_MS,
        "created_by": "bench",
    }


def _edge(source: str, source_kind: str, destination: str, kind: str, association: str) -> dict:
    return {
        "source_id": source,
        "source_kind": source_kind,
        "destination_id": destination,
        "destination_kind": kind,
        "association": association,
        "created_ms": CREATED_MS,
    }


def batches(shape: Shape, experiments: list[str]) -> Iterator[dict[str, list]]:
    pending: dict[str, list] = {"artifacts": [], "runs": [], "edges": []}
    for count, (chain, stage) in enumerate(shape.steps(), start=1):
        for table, rows in step_rows(shape, chain, stage, experiments).items():
            pending[table].extend(rows)
        if count % CHUNK == 0:
            yield pending
            pending = {"artifacts": [], "runs": [], "edges": []}
    yield pending


def load_clew(client: clew.Client, shape: Shape) -> None:
    experiments = [node_id(shape.nodes + index) for index in range(EXPERIMENTS)]
    contexts = [
        {
            "id": context_id,
            "type": "experiment",
            "name": f"exp-{index}",
            "properties": "{}",
            "created_ms": CREATED_MS,
            "created_by": "bench",
        }
        for index, context_id in enumerate(experiments)
    ]
    with client.store.db.write() as connection:
        connection.execute(schema.contexts.insert(), contexts)
    for batch in batches(shape, experiments):
        with client.store.db.write() as connection:
            connection.execute(schema.artifacts.insert(), batch["artifacts"])
            connection.execute(schema.runs.insert(), batch["runs"])
            connection.execute(schema.edges.insert(), batch["edges"])


def measure_clew(directory: Path, shape: Shape) -> dict[str, Any]:
    client = clew.Client(str(directory / "clew"))
    with stopwatch() as load:
        load_clew(client, shape)
    starts = iter(f"artifact:{node_id(n)}" for n in shape.starts(STARTS + 4, DEPTH) * 2)
    figures: dict[str, Any] = {"load_s": load[0]}
    for direction in ("upstream", "downstream"):
        walk = getattr(client.lineage, direction)
        edges: list[int] = []

        def one(walk: Any = walk, edges: list[int] = edges) -> None:
            edges.append(len(walk(next(starts), max_depth=DEPTH).edges))

        timings = latencies_ms(one, STARTS)
        figures[direction] = {
            "p50": percentile(timings, 0.5),
            "p95": percentile(timings, 0.95),
            "edges": sum(edges) / len(edges),
        }
    client.close()
    return figures


def measure_mlmd(python: str, directory: Path, shape: Shape) -> dict[str, Any] | str:
    """Run ``mlmd_lineage.py`` under the ML Metadata virtualenv; its JSON or why it failed."""
    if not Path(python).exists():
        return f"ML Metadata not measured: no interpreter at {python} (see docs/benchmarks.md)"
    command = [
        python,
        str(HERE / "mlmd_lineage.py"),
        str(directory / "mlmd.db"),
        str(shape.chains),
        str(shape.stages),
        str(DEPTH),
        str(STARTS),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"ML Metadata failed: {done.stderr.strip().splitlines()[-1:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--nodes", type=int, help="graph size (default 1,000,000)")
    arguments.add_argument(
        "--mlmd-python",
        default=str(HERE / ".mlmd-venv" / "bin" / "python"),
        help="python of a virtualenv with ml-metadata (skip the peer if it does not exist)",
    )
    options = arguments.parse_args()
    shape = Shape.for_nodes(options.nodes or (50_000 if options.quick else 1_000_000))
    with tempfile.TemporaryDirectory(prefix="clew-bench-lineage-") as temp:
        started = time.perf_counter()
        ours = measure_clew(Path(temp), shape)
        print(f"clew: {shape.nodes:,} nodes loaded in {ours['load_s']:.0f} s", file=sys.stderr)
        peer = measure_mlmd(options.mlmd_python, Path(temp), shape)
        print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results = []
    for direction in ("upstream", "downstream"):
        for stat in ("p50", "p95"):
            theirs = peer[direction][stat] if isinstance(peer, dict) else None
            note = f"{ours[direction]['edges']:.0f} edges per walk on average"
            if stat == "p50":
                note += (
                    f" (ML Metadata: {peer[direction]['edges']:.0f} events; graph loaded in "
                    f"{peer['load_s']:.0f} s)"
                    if isinstance(peer, dict)
                    else f"; {peer}"
                )
            results.append(
                Result(
                    benchmark="lineage",
                    operation=f"{direction} depth {DEPTH}, {shape.nodes:,} nodes, {stat}",
                    unit="ms",
                    higher_is_better=False,
                    clew=ours[direction][stat],
                    peer=theirs,
                    peer_name="ML Metadata",
                    target_value=TARGET_P50_MS if stat == "p50" else None,
                    note=note,
                )
            )
    finish("Lineage walks (SQLite stores)", results, options.json)


if __name__ == "__main__":
    main()
