"""The ML Metadata side of ``bench_lineage.py``, run under a virtualenv that has ml-metadata.

    python mlmd_lineage.py DB_PATH CHAINS STAGES DEPTH STARTS

Loads the graph of ``lineage_shape.Shape(CHAINS, STAGES)`` through MLMD's batch API (artifacts
as ``Dataset``/``Model``, runs as ``Training`` executions, ``INPUT``/``OUTPUT`` events, one of
100 ``Experiment`` contexts per run), then walks ``get_lineage_subgraph`` from the same start
artifacts as clew and prints one JSON line: load time, and p50/p95 ms and mean events per walk
for each direction.
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


def walk_figures(
    store: metadata_store.MetadataStore, starts: list[int], depth: int, direction: int
) -> dict[str, float]:
    pending = iter(starts)
    events: list[int] = []

    def one() -> None:
        options = mlmd.LineageSubgraphQueryOptions(
            starting_artifacts=mlmd.LineageSubgraphQueryOptions.StartingNodes(
                filter_query=f"id = {next(pending)}"
            ),
            max_num_hops=depth,
            direction=direction,
        )
        events.append(len(store.get_lineage_subgraph(options).events))

    timings = latencies_ms(one, len(starts) - 4)
    return {
        "p50": percentile(timings, 0.5),
        "p95": percentile(timings, 0.95),
        "edges": sum(events) / len(events),
    }


def main() -> None:
    path, chains, stages, depth, count = sys.argv[1:6]
    shape = Shape(int(chains), int(stages))
    store = open_store(path)
    started = time.perf_counter()
    artifact_ids = load(store, shape)
    load_s = time.perf_counter() - started
    starts = [artifact_ids[n] for n in shape.starts(int(count) + 4, int(depth))]
    figures: dict[str, Any] = {"load_s": load_s}
    for name, direction in (
        ("upstream", mlmd.LineageSubgraphQueryOptions.UPSTREAM),
        ("downstream", mlmd.LineageSubgraphQueryOptions.DOWNSTREAM),
    ):
        figures[name] = walk_figures(store, starts, int(depth), direction)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
