"""Monitoring: drift + data quality over a window of captured predictions, clew vs Evidently.

    uv run --group bench python benchmarks/bench_monitoring.py [--quick] [--full]

A 100k-row baseline of 25 features (20 numeric, 5 categorical) and windows of 100k and 1M
captured rows (10M with ``--full``) written through clew's own capture path (signed Parquet
batches in an embedded store). clew builds the baseline and runs both checks over each window
reading the capture files; Evidently 0.7 (``Report([DataDriftPreset(), DataSummaryPreset()])``)
runs in its own virtualenv (``benchmarks/.evidently-venv``: Evidently needs pandas < 3) on the
same rows, loaded from the same Parquet files into pandas *before* its clock starts. Each side
runs in a fresh child process that reports its own CPU seconds (user + system), wall seconds
and peak RSS, so the figures are of that work alone; the machine is shared, so CPU time and
ratios are the figures to read.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from report import Result, finish, parser

if TYPE_CHECKING:
    import pandas as pd

HERE = Path(__file__).parent
EVIDENTLY_VENV = HERE / ".evidently-venv"
NUMERIC, CATEGORICAL = 20, 5
BASELINE_ROWS = 100_000
ROWS_PER_CALL = 10_000
CALLS_PER_BATCH = 5
# Calls' inputs cycle through this many distinct 10k-row frames (200k distinct rows): a 10M
# window is built in minutes, its rows sealed and written like any capture.
DISTINCT_CALLS = 20
TARGET_RATIO, TARGET_SECONDS, TARGET_MIB = 30.0, 2.0, 500.0


def frame(rows: int, seed: int, shift: float) -> pd.DataFrame:
    """Imports pandas itself: the clew child never loads it (a check does not need it)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for j in range(NUMERIC):
        columns[f"n{j}"] = rng.normal(j + (shift if j % 4 == 0 else 0.0), 1.0 + j / 10, rows)
    for j in range(CATEGORICAL):
        values = np.array([f"v{k}" for k in range(5 + 3 * j)])
        weights = np.linspace(1.0, 2.0 + shift * (j % 2), len(values))
        columns[f"c{j}"] = values[rng.choice(len(values), rows, p=weights / weights.sum())]
    return pd.DataFrame(columns)


def build_store(home: Path, rows: int) -> None:
    """A store with a registered version, its baseline dataset and ``rows`` captured rows."""
    import clew
    from clew.domain import ids
    from clew.domain.captures import Call, CaptureTarget
    from clew.service.capture_sealing import StoreWriter

    client = clew.connect(str(home))
    from sklearn.dummy import DummyClassifier

    stand_in = DummyClassifier().fit(np.zeros((2, 1)), [0, 1])  # monitoring never loads it
    with client.start_run("bench", "train") as run:
        artifact = run.log_model(stand_in, name="bench-model")
    version = client.register_model(artifact, "bench")
    baseline = frame(BASELINE_ROWS, seed=1, shift=0.0)
    client.monitoring.create_baseline("bench/1", baseline)
    target = CaptureTarget(version.id, "bench", 1, version.digest)
    writer = StoreWriter(client.store, "bench")
    pool = [frame(ROWS_PER_CALL, seed=10 + k, shift=0.5) for k in range(DISTINCT_CALLS)]
    written, calls_made = 0, 0
    while written < rows:
        calls = []
        for _ in range(CALLS_PER_BATCH):
            if written >= rows:
                break
            size = min(ROWS_PER_CALL, rows - written)
            inputs = pool[calls_made % DISTINCT_CALLS].iloc[:size]
            calls_made += 1
            calls.append(Call(ids.new_id(), int(time.time() * 1000), size, np.zeros(size), inputs))
            written += size
        writer.write(target, calls, 0)
    client.close()


def child_clew(home: str) -> dict[str, Any]:
    """Both checks over the whole window, in this fresh process; its own CPU, wall, RSS.
    Imports and opening the store happen before the clock starts, as for Evidently."""
    import scipy.stats  # noqa: F401  (the drift p-values' one dependency)

    import clew
    from clew.service import monitoring_checks  # noqa: F401

    client = clew.connect(home)
    client.monitoring.find_baseline("bench/1")
    cpu, wall = time.process_time(), time.perf_counter()
    reports = client.monitoring.check("bench/1")
    return {
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": reports[0].rows,
        "drifted": sorted(v.feature_name for v in reports[1].violations),
    }


EVIDENTLY_CHILD = r"""
import json, resource, sys, time, glob
import pandas as pd, pyarrow.parquet as pq, pyarrow as pa
from evidently import Report
from evidently.presets import DataDriftPreset, DataSummaryPreset
baseline, captures = sys.argv[1], sys.argv[2]
reference = pd.read_parquet(baseline)
paths = sorted(glob.glob(captures + "/**/*.parquet", recursive=True))
tables = [pq.read_table(p, columns=["inputs"]) for p in paths]
current = pa.concat_tables(tables).column("inputs").combine_chunks().flatten()
current = pa.Table.from_arrays(current, names=list(reference.columns)).to_pandas()
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cpu, wall = time.process_time(), time.perf_counter()
report = Report([DataDriftPreset(), DataSummaryPreset()])
snapshot = report.run(current_data=current, reference_data=reference)
snapshot.dict()
print(json.dumps({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "loaded_mib": loaded,
  "rows": len(current)}))
"""


def run_child(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def measure(rows: int, with_peer: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    with tempfile.TemporaryDirectory(prefix="clew-bench-monitoring-") as temp:
        home = Path(temp) / "home"
        build_store(home, rows)
        ours = run_child([sys.executable, __file__, "--child", str(home)])
        print(f"clew, {rows} rows: {json.dumps(ours)}", flush=True)
        peer = None
        python = EVIDENTLY_VENV / "bin" / "python"
        if with_peer and python.exists():
            baseline = Path(temp) / "baseline.parquet"
            pq.write_table(pa.Table.from_pandas(frame(BASELINE_ROWS, 1, 0.0)), baseline)
            peer = run_child([str(python), "-c", EVIDENTLY_CHILD, str(baseline), str(home)])
            print(f"Evidently, {rows} rows: {json.dumps(peer)}", flush=True)
    return ours, peer


def ensure_evidently() -> str:
    python = EVIDENTLY_VENV / "bin" / "python"
    if python.exists():
        return "ok"
    try:
        subprocess.run(["uv", "venv", "-q", "--python", "3.11", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "-q",
                "--python",
                str(python),
                "evidently==0.7.*",
                "pandas<3",
                "pyarrow",
            ],
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        return f"Evidently did not install: {error}"
    return "ok"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child_clew(sys.argv[2])))
        return
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--full", action="store_true", help="also 10M captured rows")
    arguments.add_argument("--no-peer", action="store_true", help="skip Evidently")
    arguments.add_argument("--rows", type=int, action="append", help="only these window sizes")
    options = arguments.parse_args()
    sizes = [100_000] if options.quick else [100_000, 1_000_000]
    if options.full:
        sizes.append(10_000_000)
    if options.rows:
        sizes = options.rows
    peer_state = "skipped" if options.no_peer else ensure_evidently()
    results: list[Result] = []
    common = {"benchmark": "monitoring", "peer_name": "Evidently 0.7"}
    for rows in sizes:
        with_peer = peer_state == "ok" and rows <= 1_000_000
        ours, peer = measure(rows, with_peer)
        label = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows // 1_000_000}M"
        headline = rows == 1_000_000
        note = f"clew wall {ours['wall']:.2f} s, drifted {len(ours['drifted'])} features; " + (
            f"Evidently wall {peer['wall']:.2f} s, its load into pandas not timed"
            if peer
            else f"Evidently: {peer_state if not with_peer else 'not run'}"
        )
        results += [
            Result(
                operation=f"drift + data quality, {label} rows x 25, CPU s",
                unit="s",
                higher_is_better=False,
                clew=ours["cpu"],
                peer=peer["cpu"] if peer else None,
                target_ratio=TARGET_RATIO if headline else None,
                target_value=TARGET_SECONDS if headline else None,
                note=note,
                **common,
            ),
            Result(
                operation=f"throughput, {label} rows",
                unit="rows/s",
                higher_is_better=True,
                clew=rows / ours["cpu"],
                peer=rows / peer["cpu"] if peer else None,
                **common,
            ),
            Result(
                operation=f"peak memory (RSS), {label} rows",
                unit="MiB",
                higher_is_better=False,
                clew=ours["rss_mib"],
                peer=peer["rss_mib"] if peer else None,
                target_value=TARGET_MIB if headline else None,
                note="whole child process, imports included",
                **common,
            ),
        ]
    finish(
        "Monitoring: drift + data quality (embedded store, capture Parquet)", results, options.json
    )


if __name__ == "__main__":
    main()
