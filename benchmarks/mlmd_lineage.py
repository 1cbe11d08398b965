"""The ML Metadata side of ``bench_lineage.py``, run under a virtualenv that has ml-metadata.

    python mlmd_lineage.py DB_PATH CHAINS STAGES DEPTHS STARTS ROUNDS PER_STEP_STEPS

Loads the graph of ``lineage_shape.Shape(CHAINS, STAGES)`` through MLMD's batch API (artifacts
as ``Dataset``/``Model``, runs as ``Training`` executions, ``INPUT``/``OUTPUT`` events, one of
100 ``Experiment`` contexts per run), then walks ``get_lineage_subgraph`` from the same start
artifacts as clew at each of DEPTHS (comma-separated), ROUNDS times, and prints one JSON line:
load time, the per-step API's rate on a PER_STEP_STEPS-step chain in a store of its own
(``put_execution`` with its artifacts, events and context, like clew's per-call sample), and
per direction and depth the best round's p50/p95 ms, the first round's p50 and mean events.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from lineage_shape import EXPERIMENTS, OUTPUT, RAW, RUN, Shape
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd
from report import latencies_ms, percentile

BATCH = 10_000


def open_store(path: str) -> metadata_store.MetadataStore:
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def put_in_batches(put: Any, items: list[Any]) -> list[int]:
    ids: list[int] = []
    for first in range(0, len(items), BATCH):
        ids.extend(put(items[first : first + BATCH]))
    return ids


def load(store: metadata_store.MetadataStore, shape: Shape) -> dict[int, int]:
    """Insert every node and event; return node number -> MLMD artifact id."""
    type_ids = {
        name: store.put_artifact_type(mlmd.ArtifactType(name=name)) for name in ("Dataset", "Model")
    }
    run_type = store.put_execution_type(mlmd.ExecutionType(name="Training"))
    context_type = store.put_context_type(mlmd.ContextType(name="Experiment"))
    context_ids = store.put_contexts(
        [mlmd.Context(type_id=context_type, name=f"exp-{i}") for i in range(EXPERIMENTS)]
    )
    numbers, artifacts = [], []
    for chain, stage in shape.steps():
        for role, type_name in ((RAW, "Dataset"), (OUTPUT, "Model")):
            number = shape.number(chain, stage, role)
            numbers.append(number)
            artifacts.append(
                mlmd.Artifact(type_id=type_ids[type_name], name=str(number), uri=f"mem://{number}")
            )
    artifact_ids = dict(zip(numbers, put_in_batches(store.put_artifacts, artifacts), strict=True))
    steps = list(shape.steps())
    executions = [
        mlmd.Execution(type_id=run_type, name=str(shape.number(chain, stage, RUN)))
        for chain, stage in steps
    ]
    execution_ids = put_in_batches(store.put_executions, executions)
    events = []
    associations = []
    for (chain, stage), execution_id in zip(steps, execution_ids, strict=True):
        for number in shape.inputs(chain, stage):
            events.append(_event(artifact_ids[number], execution_id, mlmd.Event.INPUT))
        output = artifact_ids[shape.number(chain, stage, OUTPUT)]
        events.append(_event(output, execution_id, mlmd.Event.OUTPUT))
        associations.append(
            mlmd.Association(context_id=context_ids[chain % EXPERIMENTS], execution_id=execution_id)
        )
    for first in range(0, len(events), BATCH):
        store.put_events(events[first : first + BATCH])
    for first in range(0, len(associations), BATCH):
        store.put_attributions_and_associations([], associations[first : first + BATCH])
    return artifact_ids


def _event(artifact_id: int, execution_id: int, kind: int) -> mlmd.Event:
    return mlmd.Event(artifact_id=artifact_id, execution_id=execution_id, type=kind)


def per_step_rate(path: str, steps: int) -> tuple[float, float]:
    """Nodes per second and per CPU-second through ``put_execution``: each step a fresh input,
    the previous step's output and one new output, in one of the 100 experiment contexts."""
    store = open_store(path)
    dataset = store.put_artifact_type(mlmd.ArtifactType(name="Dataset"))
    model = store.put_artifact_type(mlmd.ArtifactType(name="Model"))
    run_type = store.put_execution_type(mlmd.ExecutionType(name="Training"))
    context_type = store.put_context_type(mlmd.ContextType(name="Experiment"))
    contexts: dict[int, mlmd.Context] = {}
    previous = None
    started, cpu = time.perf_counter(), time.process_time()
    for stage in range(steps):
        index = stage % EXPERIMENTS
        context = contexts.get(index) or mlmd.Context(type_id=context_type, name=f"exp-{index}")
        pairs = [
            (mlmd.Artifact(type_id=dataset, uri=f"bench://raw/{stage}"), _kind(mlmd.Event.INPUT)),
            (mlmd.Artifact(type_id=model, uri=f"bench://out/{stage}"), _kind(mlmd.Event.OUTPUT)),
        ]
        if previous is not None:
            pairs.append((previous, _kind(mlmd.Event.INPUT)))
        execution = mlmd.Execution(type_id=run_type, name=f"step-{stage}")
        _, artifact_ids, context_ids = store.put_execution(execution, pairs, [context])
        previous = mlmd.Artifact(id=artifact_ids[1], type_id=model)
        if index not in contexts:
            contexts[index] = mlmd.Context(
                id=context_ids[0], type_id=context_type, name=context.name
            )
    return steps * 3 / (time.perf_counter() - started), steps * 3 / (time.process_time() - cpu)


def _kind(kind: int) -> mlmd.Event:
    return mlmd.Event(type=kind)


def walk_figures(
    store: metadata_store.MetadataStore, starts: list[int], depth: int, direction: int, rounds: int
) -> dict[str, float]:
    events: list[int] = []
    timings = []
    cpu: list[float] = []
    for _ in range(rounds):
        pending = iter(starts)

        def one(pending: Any = pending) -> None:
            started = time.process_time()
            options = mlmd.LineageSubgraphQueryOptions(
                starting_artifacts=mlmd.LineageSubgraphQueryOptions.StartingNodes(
                    filter_query=f"id = {next(pending)}"
                ),
                max_num_hops=depth,
                direction=direction,
            )
            events.append(len(store.get_lineage_subgraph(options).events))
            cpu.append((time.process_time() - started) * 1000)

        timings.append(latencies_ms(one, len(starts), warmup=0))
    best = min(timings, key=lambda values: percentile(values, 0.5))
    return {
        "p50": percentile(best, 0.5),
        "p95": percentile(best, 0.95),
        "cold_p50": percentile(timings[0], 0.5),
        "cpu_p50": percentile(cpu, 0.5),
        "edges": sum(events) / len(events),
    }


def main() -> None:
    path, chains, stages, depths, count, rounds, steps = sys.argv[1:8]
    shape = Shape(int(chains), int(stages))
    figures: dict[str, Any] = {}
    figures["per_step_rate"], figures["per_step_cpu_rate"] = per_step_rate(
        path + ".per-step", int(steps)
    )
    store = open_store(path)
    started, cpu = time.perf_counter(), time.process_time()
    artifact_ids = load(store, shape)
    figures["load_s"] = time.perf_counter() - started
    figures["load_cpu_s"] = time.process_time() - cpu
    for depth in (int(value) for value in depths.split(",")):
        starts = [artifact_ids[n] for n in shape.starts(int(count), depth)]
        for name, direction in (
            ("upstream", mlmd.LineageSubgraphQueryOptions.UPSTREAM),
            ("downstream", mlmd.LineageSubgraphQueryOptions.DOWNSTREAM),
        ):
            figures[f"{name}-{depth}"] = walk_figures(store, starts, depth, direction, int(rounds))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
