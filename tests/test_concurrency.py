"""Two processes writing to one store at the same time: both finish, nothing is lost, and the
audit chain stays linear."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from clew.service import audit
from clew.store.location import open_store

_WORKER = textwrap.dedent(
    """
    import sys
    import clew

    client = clew.Client(sys.argv[1])
    name, points, runs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for index in range(runs):
        options = {"name": f"{name}-{index}", "capture_code": False}
        with client.start_run(experiment="shared", **options) as run:
            run.log_params({"worker": name, "index": index})
            for step in range(points):
                run.log_metric("loss", 1.0 / (step + 1))
            run.flush()
            run.set_tag("done", "yes")
    client.close()
    print("ok", flush=True)
    """
)


def test_two_processes_log_to_one_store_at_once(tmp_path: Path) -> None:
    home = tmp_path / "shared-store"
    env = {k: v for k, v in os.environ.items() if k != "CLEW_URI"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(home), name, "20000", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("a", "b")
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert stdout.strip() == "ok"
    with sqlite3.connect(home / "clew.db") as connection:
        runs = connection.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        points = connection.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        per_run = connection.execute(
            "SELECT MIN(n), MAX(n) FROM (SELECT COUNT(*) AS n FROM metrics GROUP BY run_id)"
        ).fetchone()
        experiments = connection.execute(
            "SELECT COUNT(*) FROM contexts WHERE type = 'experiment' AND name = 'shared'"
        ).fetchone()[0]
    assert runs == [("FINISHED", 10)]
    assert points == 2 * 5 * 20000
    assert per_run == (20000, 20000)
    assert experiments == 1
    store = open_store(str(home))
    checked, broken = audit.verify_chain(store)
    store.close()
    assert broken is None
    assert checked >= 10 * 4


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "fresh-store"
    env = {k: v for k, v in os.environ.items() if k != "CLEW_URI"}
    script = "import sys, clew; clew.Client(sys.argv[1]).close(); print('ok')"
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    for opener in openers:
        stdout, stderr = opener.communicate(timeout=300)
        assert opener.returncode == 0, stderr
        assert stdout.strip() == "ok"
    with sqlite3.connect(home / "clew.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM alembic_version").fetchone() == (1,)
