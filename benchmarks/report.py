"""Result rows shared by every ``bench_*.py`` script: one table format, one JSON format.

Each benchmark prints its rows as a table and, with ``--json PATH``, writes them as JSON so
``run_all.py`` can collect every script's figures into ``results/latest.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Result:
    """One measured operation: clew's figure, the peer's, and the target it is held to.

    ``higher_is_better`` says how to read the unit (points/s: higher; ms: lower), so the ratio
    is always "how many times better clew is". ``target_ratio`` is a minimum ratio against the
    peer; ``target_value`` is an absolute bound on clew's own figure (minimum when higher is
    better, maximum otherwise). Either, both or neither may be set.
    """

    benchmark: str
    operation: str
    unit: str
    higher_is_better: bool
    clew: float | None
    peer: float | None = None
    peer_name: str = ""
    target_ratio: float | None = None
    target_value: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.clew or not self.peer:
            return None
        return self.clew / self.peer if self.higher_is_better else self.peer / self.clew

    @property
    def target(self) -> str:
        parts = []
        if self.target_value is not None:
            bound = "≥" if self.higher_is_better else "<"
            parts.append(f"{bound} {human(self.target_value)} {self.unit}")
        if self.target_ratio is not None:
            parts.append(f"≥ {self.target_ratio:g}× {self.peer_name}")
        return ", ".join(parts) or "-"

    @property
    def passed(self) -> bool | None:
        if self.target_value is None and self.target_ratio is None:
            return None
        checks = []
        if self.target_value is not None and self.clew is not None:
            checks.append(
                self.clew >= self.target_value
                if self.higher_is_better
                else self.clew < self.target_value
            )
        if self.target_ratio is not None:
            ratio = self.ratio
            checks.append(ratio is not None and ratio >= self.target_ratio)
        return all(checks) if checks else None

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio, "target": self.target, "passed": self.passed}


def human(value: float | None) -> str:
    """Figures as people read them: 123k, 4.56, 0.123."""
    if value is None:
        return "-"
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


HEADER = ["operation", "clew", "peer", "ratio", "target", "pass"]


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    rows = []
    for result in results:
        peer = f"{human(result.peer)} ({result.peer_name})" if result.peer is not None else "-"
        ratio = f"{result.ratio:.1f}×" if result.ratio is not None else "-"
        verdict = {True: "PASS", False: "FAIL", None: "-"}[result.passed]
        rows.append(
            [
                f"{result.operation} [{result.unit}]",
                human(result.clew),
                peer,
                ratio,
                result.target,
                verdict,
            ]
        )
    return rows


def print_table(title: str, results: Sequence[Result]) -> None:
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    print(f"\n{title}")
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for result in results:
        if result.note:
            print(f"  note ({result.operation}): {result.note}")


def finish(title: str, results: Sequence[Result], json_path: str | None) -> None:
    """Print the table and, when asked, write the rows for ``run_all.py``."""
    print_table(title, results)
    if json_path:
        Path(json_path).write_text(json.dumps([r.to_dict() for r in results], indent=2))


def parser(description: str) -> argparse.ArgumentParser:
    """The flags every benchmark shares: ``--quick`` for a smoke run, ``--json`` for run_all."""
    arguments = argparse.ArgumentParser(description=description)
    arguments.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    arguments.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return arguments


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as elapsed:`` then ``elapsed[0]`` holds the seconds taken."""
    holder: list[float] = []
    start = time.perf_counter()
    try:
        yield holder
    finally:
        holder.append(time.perf_counter() - start)


def latencies_ms(call: Callable[[], object], repeat: int, warmup: int = 2) -> list[float]:
    """Wall-clock milliseconds of ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(fraction * 100) - 1]


@contextmanager
def sqlite_sync(mode: str) -> Iterator[None]:
    """Stores opened inside use ``CLEW_SQLITE_SYNC=mode`` (full or normal; read at open)."""
    previous = os.environ.get("CLEW_SQLITE_SYNC")
    os.environ["CLEW_SQLITE_SYNC"] = mode
    try:
        yield
    finally:
        if previous is None:
            del os.environ["CLEW_SQLITE_SYNC"]
        else:
            os.environ["CLEW_SQLITE_SYNC"] = previous


def fsync_ms(directory: Path, repeat: int = 20) -> float:
    """Median time to write and fsync 4 KiB here: the floor under any durable commit."""
    path = directory / "fsync-probe"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        timings = []
        for _ in range(repeat):
            start = time.perf_counter()
            os.write(descriptor, b"x" * 4096)
            os.fsync(descriptor)
            timings.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(descriptor)
        path.unlink()
    return statistics.median(timings)
