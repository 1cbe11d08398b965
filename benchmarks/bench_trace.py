"""Trace: ``clew.trace(prediction_id)`` on the embedded store, against the < 100 ms target.

The store is the one ``clew demo`` builds (a data-preparation run and a training run in a real
git repository, a registered, approved and promoted version, a batch of served predictions),
so every step of the thread is there to verify: the prediction's signature and inclusion
proof, the model's digest, approvals, promotions, the run's code and environment, datasets and
their sources. No peer has this operation, so there is no ratio.

    uv run --group bench python benchmarks/bench_trace.py [--repeat N] [--quick]
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from report import Result, finish, latencies_ms, parser, percentile

import clew

TARGET_MS = 100.0


def build_demo_store(home: Path) -> str:
    """Run ``clew demo`` in a fresh home, as a user would; returns the prediction id it
    suggests tracing."""
    environment = {**os.environ, "CLEW_HOME": str(home), "CLEW_USER": "bench", "COLUMNS": "200"}
    environment.pop("CLEW_URI", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "clew"), "demo", "--workdir", str(home.parent / "work")],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
    )
    found = re.search(r"clew trace ([\w.]+)", done.stdout)
    if found is None:
        raise RuntimeError(f"clew demo printed no prediction id:\n{done.stdout[-2000:]}")
    return found.group(1)


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--repeat", type=int, help="traces timed (default 200)")
    options = arguments.parse_args()
    repeat = options.repeat or (30 if options.quick else 200)
    with tempfile.TemporaryDirectory(prefix="clew-bench-trace-") as temp:
        home = Path(temp) / "home"
        prediction_id = build_demo_store(home)
        client = clew.connect(str(home))
        first = client.trace(prediction_id)
        if not first.step("prediction").verified:
            raise RuntimeError(f"the demo's prediction {prediction_id} did not verify")
        timings = latencies_ms(lambda: client.trace(prediction_id), repeat)
        client.close()
    common = {"benchmark": "trace", "unit": "ms", "higher_is_better": False}
    results = [
        Result(
            operation="trace one prediction, p50",
            clew=statistics.median(timings),
            target_value=TARGET_MS,
            note=f"median of {repeat} traces of a `clew demo` prediction; each call re-checks "
            "the signature, proof and digests",
            **common,
        ),
        Result(
            operation="trace one prediction, p95",
            clew=percentile(timings, 0.95),
            note=f"{len(first.steps)} steps in the thread, "
            f"{sum(step.verified for step in first.steps)} of them verifiable and verified",
            **common,
        ),
    ]
    finish("Trace (embedded SQLite store)", results, options.json)


if __name__ == "__main__":
    main()
