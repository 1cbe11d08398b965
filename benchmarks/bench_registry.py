"""Model registry: version creation and alias resolution, clew in-process vs MLflow on SQLite.

* version creation: clew ``client.register_model(model_artifact, name)`` vs MLflow
  ``create_model_version(name, source, run_id)``. Each clew version points at its own logged
  model artifact (logged beforehand, untimed), each MLflow version at its own source dir.
* alias resolution: clew ``client.get_version("name@champion")`` vs MLflow
  ``get_model_version_by_alias(name, "champion")``, with ``--versions`` versions registered.

Version creation is compared at equal durability: a version is a governance write, so clew
fsyncs its commit before ``register_model`` returns under either SQLite sync setting
(``CLEW_SQLITE_SYNC=normal``, the default for bulk telemetry, or ``full``), just as MLflow's
SQLite commits are fsynced. Both settings and MLflow are timed ``--rounds`` times interleaved,
each figure the median of its rounds, so load from other processes on the machine hits all
three alike.

The pages each registration's commit writes, which bound a durable version as much as its
CPU does, are counted and named per table and index by ``benchmarks/registry_pages.py``.

    uv run --group bench python benchmarks/bench_registry.py [--versions N] [--rounds N] [--quick]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from mlflow_peer import open_mlflow
from report import Result, finish, fsync_ms, latencies_ms, parser, sqlite_sync, stopwatch

import clew

NAME = "churn"
ALIAS = "champion"
TARGET_CREATE = 10.0
TARGET_ALIAS = 20.0


def clew_figures(
    directory: Path, versions: int, lookups: int, sync: str
) -> tuple[float, float, float]:
    """(ms per register_model, ms per alias resolution, CPU ms per register_model) on a store
    with ``CLEW_SQLITE_SYNC``."""
    with sqlite_sync(sync):
        client = clew.Client(str(directory / f"clew-{sync}"))
    models = directory / f"clew-models-{sync}"
    models.mkdir()
    with client.start_run(experiment="bench", name="train") as run:
        logged = []
        for index in range(versions + 1):
            path = models / f"model-{index}.bin"
            path.write_bytes(f"model {index}".encode())
            logged.append(run.log_output(path, name=f"{NAME}-model", type="model"))
    client.register_model(logged[0], NAME)
    cpu_start = time.process_time()
    with stopwatch() as elapsed:
        for artifact in logged[1:]:
            client.register_model(artifact, NAME)
    cpu_ms = (time.process_time() - cpu_start) * 1000 / versions
    client.promote(f"{NAME}/1", ALIAS, new_alias=True)
    resolved = client.get_version(f"{NAME}@{ALIAS}")
    if resolved.version != 1:
        raise RuntimeError(f"clew resolved {NAME}@{ALIAS} to version {resolved.version}")
    alias_ms = statistics.median(
        latencies_ms(lambda: client.get_version(f"{NAME}@{ALIAS}"), lookups)
    )
    client.close()
    return elapsed[0] * 1000 / versions, alias_ms, cpu_ms


def mlflow_figures(directory: Path, versions: int, lookups: int) -> tuple[float, float, float]:
    client, experiment_id = open_mlflow(directory / "mlflow")
    run_id = client.create_run(experiment_id).info.run_id
    sources = []
    for index in range(versions + 1):
        source = directory / "mlflow-models" / f"model-{index}"
        source.mkdir(parents=True)
        (source / "model.bin").write_bytes(f"model {index}".encode())
        sources.append(source.as_uri())
    client.create_registered_model(NAME)
    client.create_model_version(NAME, sources[0], run_id)
    cpu_start = time.process_time()
    with stopwatch() as elapsed:
        for source in sources[1:]:
            client.create_model_version(NAME, source, run_id)
    cpu_ms = (time.process_time() - cpu_start) * 1000 / versions
    client.set_registered_model_alias(NAME, ALIAS, "1")
    if str(client.get_model_version_by_alias(NAME, ALIAS).version) != "1":
        raise RuntimeError(f"MLflow resolved {NAME}@{ALIAS} to another version")
    alias_ms = statistics.median(
        latencies_ms(lambda: client.get_model_version_by_alias(NAME, ALIAS), lookups)
    )
    return elapsed[0] * 1000 / versions, alias_ms, cpu_ms


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--versions", type=int, help="versions created per tool (default 300)")
    arguments.add_argument("--lookups", type=int, help="alias resolutions timed (default 2,000)")
    arguments.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    options = arguments.parse_args()
    versions = options.versions or (50 if options.quick else 300)
    lookups = options.lookups or (300 if options.quick else 2_000)
    figures: dict[str, list[tuple[float, float, float]]] = {"normal": [], "full": [], "mlflow": []}
    fsyncs = []
    for _ in range(options.rounds):
        with tempfile.TemporaryDirectory(prefix="clew-bench-registry-") as temp:
            fsyncs.append(fsync_ms(Path(temp)))
            for sync in ("normal", "full"):
                figures[sync].append(clew_figures(Path(temp), versions, lookups, sync))
            figures["mlflow"].append(mlflow_figures(Path(temp), versions, lookups))
    create = {tool: statistics.median(f[0] for f in rounds) for tool, rounds in figures.items()}
    alias = {tool: statistics.median(f[1] for f in rounds) for tool, rounds in figures.items()}
    cpu = {tool: statistics.median(f[2] for f in rounds) for tool, rounds in figures.items()}

    def cpu_note(sync: str) -> str:
        return (
            f"CPU per version: clew {cpu[sync]:.3f} ms, MLflow {cpu['mlflow']:.3f} ms "
            f"({cpu['mlflow'] / cpu[sync]:.1f}×, same rounds)"
        )

    common = {"benchmark": "registry", "unit": "ms", "higher_is_better": False}
    peer = {"peer_name": "MLflow create_model_version", **common}
    sampled = f"median of {options.rounds} rounds of {versions:,} versions per tool"
    results = [
        Result(
            operation="create model version (sync=normal, default)",
            clew=create["normal"],
            peer=create["mlflow"],
            target_ratio=TARGET_CREATE,
            note=f"{sampled}; {cpu_note('normal')}; equal durability: each version's commit "
            "is fsynced before it returns (a governance write; CLEW_SQLITE_SYNC=normal spares "
            "only bulk telemetry), "
            f"like MLflow's SQLite commits; one 4 KiB write+fsync takes "
            f"{statistics.median(fsyncs):.2f} ms here (median), a floor for both",
            **peer,
        ),
        Result(
            operation="create model version (sync=full)",
            clew=create["full"],
            peer=create["mlflow"],
            note=f"{sampled}; {cpu_note('full')}; CLEW_SQLITE_SYNC=full fsyncs every commit, "
            "bulk ones too: the same durability for versions",
            **peer,
        ),
        Result(
            operation="resolve alias in-process",
            clew=alias["normal"],
            peer=alias["mlflow"],
            peer_name="MLflow get_model_version_by_alias",
            target_ratio=TARGET_ALIAS,
            note=f"median of {lookups:,} lookups, {versions + 1:,} versions registered",
            **common,
        ),
    ]
    finish("Model registry (SQLite stores)", results, options.json)


if __name__ == "__main__":
    main()
