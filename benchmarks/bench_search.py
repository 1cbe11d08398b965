"""Run search: ``metrics.auc > 0.8 and params.model = 'rf'`` over N runs, clew vs MLflow.

Each size is searched twice: newest first (both tools' default order) and ordered by
``metrics.auc DESC`` — the query MLflow users complain about — and both tools must return
the same 100 runs in the same order. The first call on a freshly loaded store (the cold
round) is reported beside the median.

Both stores hold the same N runs (3 params, 2 metrics, 1 tag each; ~10% match the filter).
Populating through either SDK would take longer than the measurement itself, so both are
bulk-loaded with SQLAlchemy Core straight into each tool's own schema: clew's ``runs``,
``params``, ``metrics``, ``latest_metrics`` and ``tags`` tables; for MLflow, one real run is
logged through its API and its rows in ``runs``, ``params``, ``metrics``, ``latest_metrics``
and ``tags`` are cloned per run, so every column MLflow itself writes is filled the way it
fills it. The timed call is each SDK's public ``search_runs`` returning a pandas DataFrame.

    uv run --group bench python benchmarks/bench_search.py [--runs 300,100000] [--quick]
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_peer import open_mlflow
from report import Result, finish, latencies_ms, parser, stopwatch
from sqlalchemy import MetaData, Table, create_engine, select

import clew
from clew.domain import ids
from clew.store import schema

FILTER = "metrics.auc > 0.8 and params.model = 'rf'"
MAX_RESULTS = 100
TARGET_RATIO = 10.0
TARGET_SIZE = 100_000
ORDERED_TARGET_MS = {100_000: 50.0, 1_000_000: 100.0}  # issue 16: ordered top 100
CHUNK = 5_000
START_MS = 1_700_000_000_000


@dataclass(frozen=True)
class FakeRun:
    index: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def start_ms(self) -> int:
        return START_MS + self.index * 1_000


def fake_runs(count: int, seed: int = 7) -> Iterator[FakeRun]:
    """The same runs for both stores: 4 model families, auc uniform in [0.5, 1)."""
    rng = random.Random(seed)
    for index in range(count):
        yield FakeRun(
            index,
            params={
                "model": rng.choice(["rf", "xgb", "lr", "svm"]),
                "n_estimators": str(rng.randrange(50, 500)),
                "max_depth": str(rng.randrange(2, 16)),
            },
            metrics={"auc": rng.uniform(0.5, 1.0), "loss": rng.uniform(0.0, 1.0)},
            tags={"team": rng.choice(["risk", "growth", "fraud"])},
        )


def chunks(items: Iterator[FakeRun], size: int) -> Iterator[list[FakeRun]]:
    batch: list[FakeRun] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- clew --------------------------------------------------------------------------------


def populate_clew(client: clew.Client, count: int) -> None:
    with client.start_run(experiment="bench", name="template", capture_code=False) as run:
        run_id = run.id
    store = client.store
    with store.db.read() as connection:
        experiment_id = connection.execute(
            select(schema.runs.c.experiment_id).where(schema.runs.c.id == run_id)
        ).scalar_one()
    for batch in chunks(fake_runs(count - 1), CHUNK):
        rows: dict[str, list[dict[str, Any]]] = {
            "runs": [],
            "params": [],
            "metrics": [],
            "latest": [],
            "tags": [],
        }
        for fake in batch:
            run_id = ids.new_id()
            rows["runs"].append(
                {
                    "id": run_id,
                    "experiment_id": experiment_id,
                    "name": f"run-{fake.index}",
                    "kind": "training",
                    "status": "FINISHED",
                    "user_name": "bench",
                    "start_ms": fake.start_ms,
                    "end_ms": fake.start_ms + 500,
                    "properties": "{}",
                }
            )
            for table, values in (("params", fake.params), ("tags", fake.tags)):
                rows[table].extend(
                    {"run_id": run_id, "key": k, "value": v} for k, v in values.items()
                )
            for key, value in fake.metrics.items():
                point = {
                    "run_id": run_id,
                    "key": key,
                    "step": 0,
                    "timestamp_ms": fake.start_ms,
                    "value": value,
                }
                rows["metrics"].append(point)
                rows["latest"].append(point)
        with store.db.write() as connection:
            connection.execute(schema.runs.insert(), rows["runs"])
            connection.execute(schema.params.insert(), rows["params"])
            connection.execute(schema.metrics.insert(), rows["metrics"])
            connection.execute(schema.latest_metrics.insert(), rows["latest"])
            connection.execute(schema.tags.insert(), rows["tags"])


# --- MLflow ------------------------------------------------------------------------------

MLFLOW_TABLES = ("runs", "params", "metrics", "latest_metrics", "tags")


def populate_mlflow(directory: Path, count: int) -> str:
    """Log one template run through MLflow, then clone its rows ``count - 1`` times."""
    import mlflow

    _, experiment_id = open_mlflow(directory)
    template = FakeRun(0, {"model": "xgb", "n_estimators": "1", "max_depth": "1"}, {}, {})
    with mlflow.start_run(run_name="template") as run:
        mlflow.log_params(template.params)
        mlflow.log_metrics({"auc": 0.5, "loss": 0.5})
        mlflow.set_tags({"team": "risk"})
        template_id = run.info.run_id
    engine = create_engine(f"sqlite:///{directory / 'mlflow.db'}")
    metadata = MetaData()
    tables = {name: Table(name, metadata, autoload_with=engine) for name in MLFLOW_TABLES}
    with engine.connect() as connection:
        originals = {
            name: [
                dict(row._mapping)
                for row in connection.execute(select(table).where(table.c.run_uuid == template_id))
            ]
            for name, table in tables.items()
        }
    with engine.begin() as connection:
        for batch in chunks(fake_runs(count - 1), CHUNK):
            rows: dict[str, list[dict[str, Any]]] = {name: [] for name in MLFLOW_TABLES}
            for fake in batch:
                for name, template_rows in originals.items():
                    rows[name].extend(_mlflow_row(name, row, fake) for row in template_rows)
            for name, table in tables.items():
                connection.execute(table.insert(), rows[name])
    engine.dispose()
    return experiment_id


def _mlflow_row(table: str, template: dict[str, Any], fake: FakeRun) -> dict[str, Any]:
    run_uuid = f"{fake.index + 1:032x}"
    row = {**template, "run_uuid": run_uuid}
    name = f"run-{fake.index}"
    if table == "runs":
        row.update(
            name=name,
            start_time=fake.start_ms,
            end_time=fake.start_ms + 500,
            artifact_uri=template["artifact_uri"].replace(template["run_uuid"], run_uuid),
        )
    elif table == "params":
        row["value"] = fake.params[row["key"]]
    elif table in ("metrics", "latest_metrics"):
        row.update(value=fake.metrics[row["key"]], timestamp=fake.start_ms)
    elif row["key"] == "mlflow.runName":
        row["value"] = name
    elif row["key"] in fake.tags:
        row["value"] = fake.tags[row["key"]]
    return row


# --- measurement -------------------------------------------------------------------------


ORDERINGS: dict[str, list[str] | None] = {
    "newest first": None,
    "ordered by metrics.auc DESC": ["metrics.auc DESC"],
}


@dataclass(frozen=True)
class Measured:
    ordering: str
    clew_ms: float
    mlflow_ms: float
    note: str


def measure(directory: Path, count: int, repeat: int) -> list[Measured]:
    import mlflow

    client = clew.Client(str(directory / "clew"))
    with stopwatch() as clew_load:
        populate_clew(client, count)
    with stopwatch() as mlflow_load:
        experiment_id = populate_mlflow(directory / "mlflow", count)
    loads = f"bulk load took clew {clew_load[0]:.0f} s, MLflow {mlflow_load[0]:.0f} s"
    measured = []
    for ordering, order_by in ORDERINGS.items():

        def clew_search(order_by: list[str] | None = order_by) -> Any:
            return client.search_runs(FILTER, order_by, max_results=MAX_RESULTS)

        def mlflow_search(order_by: list[str] | None = order_by) -> Any:
            return mlflow.search_runs(
                [experiment_id], FILTER, max_results=MAX_RESULTS, order_by=order_by
            )

        clew_cold, clew_first = _first_call(clew_search)
        mlflow_cold, mlflow_first = _first_call(mlflow_search)
        clew_names = list(clew_first["name"])
        mlflow_names = list(mlflow_first["tags.mlflow.runName"])
        if clew_names != mlflow_names:
            raise RuntimeError(
                f"clew and MLflow disagree ({ordering}): {clew_names[:5]} vs {mlflow_names[:5]}"
            )
        mlflow_repeat = max(3, repeat // 4)
        clew_ms = statistics.median(latencies_ms(clew_search, repeat))
        mlflow_ms = statistics.median(latencies_ms(mlflow_search, mlflow_repeat))
        note = (
            f"median of {repeat} (MLflow {mlflow_repeat}); first call clew {clew_cold:.1f} ms, "
            f"MLflow {mlflow_cold:.1f} ms; {len(clew_names)} rows, identical to MLflow's; {loads}"
        )
        measured.append(Measured(ordering, clew_ms, mlflow_ms, note))
    client.close()
    return measured


def _first_call(call: Any) -> tuple[float, Any]:
    """The cold round: the first search on a freshly loaded store, as a user meets it."""
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--runs", help="comma-separated store sizes (default 300,100000)")
    arguments.add_argument("--repeat", type=int, default=20, help="timed searches per size")
    options = arguments.parse_args()
    sizes = [
        int(s)
        for s in (options.runs or ("300,10000" if options.quick else "300,100000")).split(",")
    ]
    results = []
    for count in sizes:
        with tempfile.TemporaryDirectory(prefix="clew-bench-search-") as temp:
            measured = measure(Path(temp), count, options.repeat)
        for one in measured:
            ordered = one.ordering != "newest first"
            results.append(
                Result(
                    benchmark="search",
                    operation=(
                        f"search_runs over {count:,} runs, {one.ordering}, "
                        f"max_results={MAX_RESULTS}"
                    ),
                    unit="ms",
                    higher_is_better=False,
                    clew=one.clew_ms,
                    peer=one.mlflow_ms,
                    peer_name="MLflow",
                    target_ratio=TARGET_RATIO if count >= TARGET_SIZE else None,
                    target_value=ORDERED_TARGET_MS.get(count) if ordered else None,
                    note=one.note,
                )
            )
    finish(f"Search: {FILTER} (SQLite stores)", results, options.json)


if __name__ == "__main__":
    main()
