"""Which b-trees (tables and indexes) one model-version registration writes, page by page.

A durable registration is bounded by the pages its commit appends to the SQLite WAL, so this
counts them: before each ``register_model`` the WAL is checkpointed into the database file and
the file is read; after it, the WAL's frames are counted, the WAL is checkpointed again and
every 4 KiB page that changed is named through SQLite's ``dbstat`` table. The figures are
averages per version over ``--versions`` registrations of a model that already has five.

    uv run python benchmarks/registry_pages.py [--versions N]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

import clew

PAGE = 4096
WAL_HEADER = 32
FRAME_HEADER = 24


def pages(database: Path) -> list[bytes]:
    """The database file's pages after folding the WAL into it."""
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = database.read_bytes()
    return [data[start : start + PAGE] for start in range(0, len(data), PAGE)]


def owners(database: Path) -> dict[int, str]:
    """Page number -> the table or index it belongs to."""
    with sqlite3.connect(database) as connection:
        return dict(connection.execute("SELECT pageno, name FROM dbstat"))


def measure(versions: int) -> tuple[float, Counter[str]]:
    """(WAL frames per version, changed pages per b-tree summed over all versions)."""
    with tempfile.TemporaryDirectory(prefix="clew-registry-pages-") as temp:
        directory = Path(temp)
        client = clew.Client(str(directory / "store"))
        with client.start_run(experiment="bench", name="train") as run:
            logged = []
            for index in range(versions + 5):
                path = directory / f"model-{index}.bin"
                path.write_bytes(f"model {index}".encode())
                logged.append(run.log_output(path, name="churn-model", type="model"))
        for artifact in logged[:5]:
            client.register_model(artifact, "churn")
        database = next((directory / "store").rglob("clew.db"))
        changed: Counter[str] = Counter()
        frames = 0
        for artifact in logged[5:]:
            before = pages(database)
            client.register_model(artifact, "churn")
            frames += (os.path.getsize(f"{database}-wal") - WAL_HEADER) // (PAGE + FRAME_HEADER)
            after = pages(database)
            named = owners(database)
            for number, page in enumerate(after, start=1):
                if number > len(before) or before[number - 1] != page:
                    changed[named.get(number, "(file header)")] += 1
        client.close()
    return frames / versions, changed


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--versions", type=int, default=30, help="registrations measured")
    options = arguments.parse_args()
    frames, changed = measure(options.versions)
    print(f"WAL frames per version: {frames:.1f}")
    print(f"changed pages per version: {sum(changed.values()) / options.versions:.1f}")
    for name, count in changed.most_common():
        print(f"  {count / options.versions:5.2f}  {name}")


if __name__ == "__main__":
    main()
