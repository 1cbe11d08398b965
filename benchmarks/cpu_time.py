"""CPU-time measurement shared by the benchmarks that time clew against a library in the same
process (bench_explain, bench_bias, bench_model_quality).

CPU time (``time.process_time``) is steadier than the wall clock on a shared machine; each
figure is the median of ``--rounds`` runs, and every script takes ``--rows``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def cpu_seconds(work: Callable[[], object], rounds: int) -> float:
    """The median CPU seconds ``work`` takes over ``rounds`` calls."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return statistics.median(times)


def sized_parser(default_rows: int) -> argparse.ArgumentParser:
    """An argument parser with ``--rows`` (default ``default_rows``) and ``--rounds`` (3)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=default_rows)
    parser.add_argument("--rounds", type=int, default=3)
    return parser
