"""Start-up: what a CLI command and the first ``clew.connect`` cost before doing any work.

Every figure is one fresh interpreter, as a user's shell starts it, on a small embedded store
(one run, one registered model); the clock is the child's CPU time (user + system, from
``resource.getrusage(RUSAGE_CHILDREN)``), so other load on the machine does not count against
it, and the wall-clock median sits in the note. ``dvc --help`` is the peer the issue names (a
CLI of the same kind), ``python -c pass`` the interpreter's own floor. Each command runs
``--rounds`` times interleaved, after one untimed round that lets Python write its bytecode
(``PYTHONDONTWRITEBYTECODE`` is dropped for the children: a user's Python caches bytecode, and
compiling every module on every start costs ~3× the CPU); the first timed round is shown beside
the median. The ``bound:`` rows time what no clew change can remove from a command that needs
it, in the same run: importing SQLAlchemy (every store read), pandas (the DataFrames the SDK
returns; ``trace`` still pays it, as pyarrow imports pandas on its first conversion of a Python
value or a tz-aware timestamp, while the listings print from the SDK's ``*_records`` calls without
it), and Typer, whose parameter parsing imports pydantic.

    uv run --group bench python benchmarks/bench_startup.py [--rounds N] [--quick]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import Result, finish, parser

CLI_TARGET_S = 0.3
CONNECT_TARGET_S = 0.2
CONNECT = "import clew; clew.connect()"
SETUP = """
import clew
from sklearn.linear_model import LogisticRegression
client = clew.connect()
with client.start_run(experiment="startup", name="fit") as run:
    run.log_params({"C": 1.0})
    run.log_metric("auc", 0.9)
    run.log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), "model")
client.register_model(run, "M")
model = client.load_model("M/1")
model.predict([[0.5]])
ids = model.last_prediction_ids
client.flush_captures()
print(list(ids)[0])
"""
BOUNDS = {
    "bound: import sqlalchemy": "import sqlalchemy",
    "bound: import pandas": "import pandas",
    "bound: import typer + pydantic": "import typer, pydantic",
}


def cpu_and_wall(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``command`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def commands(prediction: str) -> dict[str, list[str]]:
    clew = [sys.executable, "-m", "clew.cli.main"] if not shutil.which("clew") else ["clew"]
    found = {
        "clew --help": [*clew, "--help"],
        "clew runs list": [*clew, "runs", "list"],
        "clew versions M": [*clew, "versions", "M"],
        "clew models list": [*clew, "models", "list"],
        "clew status M/1": [*clew, "status", "M/1"],
        "clew trace PREDICTION (one-row thread)": [*clew, "trace", prediction],
        "first clew.connect() (embedded)": [sys.executable, "-c", CONNECT],
        "python -c pass": [sys.executable, "-c", "pass"],
        **{name: [sys.executable, "-c", code] for name, code in BOUNDS.items()},
    }
    if shutil.which("dvc"):
        found["dvc --help"] = ["dvc", "--help"]
    return found


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--rounds", type=int, help="runs of each command (default 7)")
    options = arguments.parse_args()
    rounds = options.rounds or (3 if options.quick else 7)
    with tempfile.TemporaryDirectory(prefix="clew-bench-startup-") as temp:
        env = {**os.environ, "CLEW_HOME": str(Path(temp) / "store"), "CLEW_USER": "alice"}
        env.pop("CLEW_URI", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        made = subprocess.run(
            [sys.executable, "-c", SETUP], env=env, capture_output=True, text=True
        )
        if made.returncode:
            raise SystemExit(f"could not set up the store:\n{made.stderr}")
        timed = commands(made.stdout.strip().splitlines()[-1])
        for command in timed.values():
            cpu_and_wall(command, env)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in timed}
        for _ in range(rounds):
            for name, command in timed.items():
                figures[name].append(cpu_and_wall(command, env))
    floor = statistics.median(cpu for cpu, _ in figures["python -c pass"])
    peer = (
        statistics.median(cpu for cpu, _ in figures["dvc --help"])
        if "dvc --help" in figures
        else None
    )
    results = []
    for name, measured in figures.items():
        if name in ("python -c pass", "dvc --help"):
            continue
        cpu = statistics.median(c for c, _ in measured)
        wall = statistics.median(w for _, w in measured)
        results.append(
            Result(
                benchmark="startup",
                operation=name,
                unit="CPU-s",
                higher_is_better=False,
                clew=cpu,
                peer=peer,
                peer_name="dvc --help",
                target_value=_target(name),
                note=(
                    f"median of {rounds} fresh processes, first {measured[0][0]:.3f} CPU-s; "
                    f"wall median {wall:.3f} s; python -c pass {floor:.3f} CPU-s"
                ),
            )
        )
    finish("Start-up (fresh process, embedded store)", results, options.json)


def _target(name: str) -> float | None:
    """0.2 s for the first connect, 0.3 s for a command, none for a bound."""
    if name.startswith("bound:"):
        return None
    return CONNECT_TARGET_S if "connect" in name else CLI_TARGET_S


if __name__ == "__main__":
    main()
