"""What one durable model-version registration costs below clew's Python: the floor.

Builds a store through clew, records the statements (SQL and bound parameters) that one
``register_model`` sends to the driver, then registers ``--versions`` versions three ways,
measuring this process's CPU time (and wall time) for each:

* ``clew``: ``client.register_model`` through every layer (SDK, service, SQLAlchemy, driver);
* ``sql``: the very statements clew sent, replayed with ``sqlite3`` on a copy of the database
  with fresh ids, seq and version numbers, one transaction and one WAL fdatasync each, as clew
  does under ``CLEW_SQLITE_SYNC=normal`` (the default);
* ``sql, no row-image rows``: the same without the ``audit_records`` inserts, to price them.

``clew`` minus ``sql`` is what clew's Python adds; ``sql`` is what SQLite itself spends on this
schema; wall minus CPU is waiting on the disk.

    uv run --frozen python benchmarks/registry_floor.py [--versions N]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import clew
from clew.store import metadata

NAME = "churn"
Statement = tuple[str, Any, bool]  # (sql, parameters, executemany)


def build(directory: Path, versions: int) -> tuple[clew.Client, list[Any], Path]:
    """A store with one run that logged the model artifacts every way will register."""
    client = clew.Client(str(directory / "store"))
    with client.start_run(experiment="bench", name="train") as run:
        logged = []
        for index in range(versions + 2):
            path = directory / f"model-{index}.bin"
            path.write_bytes(f"model {index}".encode())
            logged.append(run.log_output(path, name=f"{NAME}-model", type="model"))
    client.register_model(logged[0], NAME)
    return client, logged, next((directory / "store").rglob("clew.db"))


@contextmanager
def recording() -> Iterator[list[Statement]]:
    """Every statement clew's driver-level path sends while the block runs."""
    sent: list[Statement] = []
    one, many = metadata.driver_execute, metadata.driver_execute_many

    def record_one(connection: Any, sql: str, params: Any) -> Any:
        sent.append((sql, params, False))
        return one(connection, sql, params)

    def record_many(connection: Any, sql: str, rows: Any) -> None:
        sent.append((sql, rows, True))
        many(connection, sql, rows)

    metadata.driver_execute, metadata.driver_execute_many = record_one, record_many  # type: ignore[assignment]
    try:
        yield sent
    finally:
        metadata.driver_execute, metadata.driver_execute_many = one, many  # type: ignore[assignment]


def fresh(value: Any, old: Mapping[Any, Any], index: int) -> Any:
    """``value`` with this replay's unique ids and numbers in place of the recorded ones."""
    if isinstance(value, Mapping):
        return {key: fresh(item, old, index) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [fresh(item, old, index) for item in value]
    for recorded, shift in old.items():
        if value == recorded:
            return shift(index)
        if (
            isinstance(value, str)
            and isinstance(recorded, int)
            and value.startswith(f"{recorded}:")
        ):
            return f"{shift(index)}:{value.partition(':')[2]}"
    return value


def replay(
    database: Path, statements: Sequence[Statement], old: Mapping[Any, Any], versions: int
) -> tuple[float, float]:
    """(CPU ms, wall ms) per registration replaying ``statements`` on ``database``."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
    prepared = [
        [(sql, fresh(params, old, index), many) for sql, params, many in statements]
        for index in range(1, versions + 1)
    ]
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for statements_now in prepared:
        cursor = connection.cursor()
        for sql, params, many in statements_now:
            (cursor.executemany if many else cursor.execute)(sql, params)
        connection.execute("COMMIT")
        descriptor = os.open(f"{database}-wal", os.O_RDONLY)
        os.fdatasync(descriptor)
        os.close(descriptor)
    cpu = (time.process_time() - cpu_start) * 1000 / versions
    wall = (time.perf_counter() - wall_start) * 1000 / versions
    connection.close()
    return cpu, wall


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--versions", type=int, default=300, help="registrations per way")
    options = arguments.parse_args()
    versions = options.versions
    with tempfile.TemporaryDirectory(prefix="clew-registry-floor-") as temp:
        directory = Path(temp)
        client, logged, database = build(directory, versions)
        with recording() as statements:
            recorded = client.register_model(logged[1], NAME)
        with sqlite3.connect(database) as reader:
            seq, event_seq, event_id, request_id = reader.execute(
                "SELECT a.seq, e.seq, e.id, a.request_id FROM audit_log a, registry_events e "
                "WHERE a.target = ? AND e.version = 2",
                (f"{NAME}/2",),
            ).fetchone()
            reader.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        copies = [directory / f"copy-{index}.db" for index in range(2)]
        for copy in copies:
            # SQLite's backup API: a consistent copy even while clew's checkpointer runs.
            with (
                closing(sqlite3.connect(database)) as source,
                closing(sqlite3.connect(copy)) as target,
            ):
                source.backup(target)
                target.execute("PRAGMA journal_mode=WAL")
        old: dict[Any, Any] = {
            recorded.id: lambda index: f"V{index:025d}",
            event_id: lambda index: f"E{index:025d}",
            request_id: lambda index: f"R{index:025d}",
            logged[1].id: lambda index: f"A{index:025d}",
            seq: lambda index: seq + index,
            event_seq: lambda index: event_seq + index,
            2: lambda index: 2 + index,
        }
        for position in range(8):  # the packed keys of the entry's row images (schema 0016)
            old[(seq << 24) | position] = lambda index, p=position: ((seq + index) << 24) | p
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for artifact in logged[2 : versions + 2]:
            client.register_model(artifact, NAME)
        figures = {
            "clew register_model": (
                (time.process_time() - cpu_start) * 1000 / versions,
                (time.perf_counter() - wall_start) * 1000 / versions,
            )
        }
        client.close()
        without_images = [item for item in statements if "audit_records" not in item[0]]
        figures["sql (same statements)"] = replay(copies[0], statements, old, versions)
        figures["sql, no row-image rows"] = replay(copies[1], without_images, old, versions)
    print(f"statements per registration: {len(statements) + 1} (with COMMIT)")
    for label, (cpu, wall) in figures.items():
        print(f"{label:24} CPU {cpu:.3f} ms   wall {wall:.3f} ms")


if __name__ == "__main__":
    main()
