"""Lineage at a million nodes: ingest through the public API, and walks at 10 and 20 hops,
clew vs ML Metadata.

The graph (see ``lineage_shape.py``: chains of runs with fan-in 3, 30 runs deep) is built
through the public SDK: ``client.lineage.ingest(artifacts, runs)`` in batches of ``CHUNK``
steps (one transaction each). A sample of ``PER_CALL_STEPS`` steps is also built one call at a
time (``start_run`` + ``log_input``/``log_output`` of by-reference sources) in a store of its
own, to show the per-call path. Rates are nodes (runs + artifacts) per second, wall clock.

The timed walks are the public SDK, ``client.lineage.upstream("artifact:<id>", max_depth=D)``
and ``downstream(...)`` at D = 10 and 20, from ``STARTS`` random output artifacts; each set is
walked ``ROUNDS`` times: the first (cold) round and the best round are both reported.

ML Metadata (the peer) needs protobuf < 5, which conflicts with MLflow in this project's
environment, so it runs in its own virtualenv (``--mlmd-python``, made by ``run_all.py`` with
``uv venv`` + ``uv pip install ml-metadata``); the same graph is loaded through its batch API
(``put_artifacts``/``put_executions``/``put_events``), the same sample through its per-step API
(``put_execution`` with artifacts and events), and walked with
``get_lineage_subgraph(max_num_hops=D, direction=UPSTREAM|DOWNSTREAM)``.

    uv run python benchmarks/bench_lineage.py [--full | --nodes N] [--mlmd-python PATH] [--quick]

Sizes: 10k and 100k nodes, plus 1M with ``--full`` (``--quick``: 10k; ``--nodes``: one size).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lineage_shape import EXPERIMENTS, OUTPUT, RAW, RUN, Shape, digest
from report import Result, finish, latencies_ms, parser, percentile, stopwatch

import clew

DEPTHS = (10, 20)
STARTS = 200
ROUNDS = 2
PER_CALL_STEPS = 300
TARGET_RATIO = 10.0
CHUNK = 5_000
HERE = Path(__file__).parent


def _artifact(number: int, type_: str, name: str) -> dict[str, Any]:
    return {"key": str(number), "type": type_, "name": name, "digest": digest(number), "size": 1}


def step_items(shape: Shape, chain: int, stage: int) -> tuple[list[dict], dict[str, Any]]:
    """The artifact items and the run item of one step of one chain (``ingest``'s shapes).

    Inputs produced by an earlier batch are listed again with the same type, name and digest:
    ``ingest`` finds the node that run produced (one node per content)."""
    output = shape.number(chain, stage, OUTPUT)
    artifacts = [
        _artifact(shape.number(chain, stage, RAW), "dataset", f"raw-{chain}-{stage}"),
        _artifact(output, "model", f"out-{chain}-{stage}"),
    ]
    inputs = shape.inputs(chain, stage)
    for number in inputs[1:]:
        source_chain, source_stage = divmod(number // 3, shape.stages)
        artifacts.append(_artifact(number, "model", f"out-{source_chain}-{source_stage}"))
    run = {
        "key": str(shape.number(chain, stage, RUN)),
        "experiment": f"exp-{chain % EXPERIMENTS}",
        "name": f"step-{stage}",
        "inputs": [str(number) for number in inputs],
        "outputs": [str(output)],
    }
    return artifacts, run


def batches(shape: Shape) -> Iterator[tuple[list[dict], list[dict]]]:
    artifacts: dict[str, dict] = {}
    runs: list[dict] = []
    for count, (chain, stage) in enumerate(shape.steps(), start=1):
        items, run = step_items(shape, chain, stage)
        artifacts.update((item["key"], item) for item in items)
        runs.append(run)
        if count % CHUNK == 0:
            yield list(artifacts.values()), runs
            artifacts, runs = {}, []
    if runs:
        yield list(artifacts.values()), runs


def load_clew(client: clew.Client, shape: Shape) -> dict[str, str]:
    """Build the graph through ``client.lineage.ingest``; returns output node number -> id."""
    outputs: dict[str, str] = {}
    for artifacts, runs in batches(shape):
        done = client.lineage.ingest(artifacts, runs)
        outputs.update(done.artifacts)
    return outputs


def per_call_rate(directory: Path, steps: int) -> tuple[float, float]:
    """Nodes per second and per CPU-second through the per-call SDK: each step a run, its
    by-reference inputs (a fresh source and the previous step's output) and one output."""
    client = clew.Client(str(directory / "per-call"))
    previous = None
    cpu = time.process_time()
    with stopwatch() as elapsed:
        for stage in range(steps):
            with client.start_run(
                experiment=f"exp-{stage % EXPERIMENTS}", name=f"step-{stage}", capture_code=False
            ) as run:
                run.log_input(clew.data_source(f"s3://bench/raw/{stage}", name=f"raw-{stage}"))
                if previous is not None:
                    run.log_input(previous)
                source = clew.data_source(f"s3://bench/out/{stage}", name=f"out-{stage}")
                previous = run.log_output(source, type="model")
    cpu = time.process_time() - cpu
    client.close()
    return steps * 3 / elapsed[0], steps * 3 / cpu


def walk_figures(walk: Any, starts: list[str], depth: int) -> dict[str, Any]:
    """p50/p95 ms of each round over ``starts``: the first (cold) round and the best one."""
    rounds = []
    edges: list[int] = []
    cpu: list[float] = []
    for _ in range(ROUNDS):
        pending = iter(starts)

        def one(pending: Iterator[str] = pending) -> None:
            started = time.process_time()
            edges.append(len(walk(next(pending), max_depth=depth).edges))
            cpu.append((time.process_time() - started) * 1000)

        rounds.append(latencies_ms(one, len(starts), warmup=0))
    best = min(rounds, key=lambda timings: percentile(timings, 0.5))
    return {
        "p50": percentile(best, 0.5),
        "p95": percentile(best, 0.95),
        "cold_p50": percentile(rounds[0], 0.5),
        "cpu_p50": percentile(cpu, 0.5),
        "edges": sum(edges) / len(edges),
    }


def measure_clew(directory: Path, shape: Shape, starts: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    figures["per_call_rate"], figures["per_call_cpu_rate"] = per_call_rate(
        directory, PER_CALL_STEPS
    )
    client = clew.Client(str(directory / "clew"))
    cpu = time.process_time()
    with stopwatch() as load:
        outputs = load_clew(client, shape)
    figures["load_s"] = load[0]
    figures["load_cpu_s"] = time.process_time() - cpu
    figures["rate"] = shape.nodes / load[0]
    for depth in DEPTHS:
        refs = [f"artifact:{outputs[str(n)]}" for n in shape.starts(starts, depth)]
        for direction in ("upstream", "downstream"):
            walk = getattr(client.lineage, direction)
            figures[f"{direction}-{depth}"] = walk_figures(walk, refs, depth)
    client.close()
    return figures


def measure_mlmd(python: str, directory: Path, shape: Shape, starts: int) -> dict[str, Any] | str:
    """Run ``mlmd_lineage.py`` under the ML Metadata virtualenv; its JSON or why it failed."""
    if not Path(python).exists():
        return f"ML Metadata not measured: no interpreter at {python} (see docs/benchmarks.md)"
    command = [
        python,
        str(HERE / "mlmd_lineage.py"),
        str(directory / "mlmd.db"),
        str(shape.chains),
        str(shape.stages),
        ",".join(str(depth) for depth in DEPTHS),
        str(starts),
        str(ROUNDS),
        str(PER_CALL_STEPS),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"ML Metadata failed: {done.stderr.strip().splitlines()[-1:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def ingest_results(ours: dict[str, Any], peer: dict[str, Any] | str, nodes: int) -> list[Result]:
    common = {"benchmark": "lineage", "unit": "nodes/s", "higher_is_better": True}
    mlmd = isinstance(peer, dict)
    return [
        Result(
            operation=f"ingest {nodes:,} nodes, client.lineage.ingest vs MLMD per-step API",
            clew=ours["rate"],
            peer=peer["per_step_rate"] if mlmd else None,
            peer_name="ML Metadata put_execution",
            target_ratio=TARGET_RATIO,
            note=f"clew {ours['load_s']:.0f} s wall, {ours['load_cpu_s']:.0f} CPU-s "
            f"({nodes / ours['load_cpu_s']:,.0f} nodes per CPU-s); batches of {CHUNK:,} steps; "
            f"MLMD per-step rate from a {PER_CALL_STEPS}-step sample"
            + (f" ({peer['per_step_cpu_rate']:,.0f} nodes per CPU-s)" if mlmd else f"; {peer}"),
            **common,
        ),
        Result(
            operation=f"ingest {nodes:,} nodes, client.lineage.ingest vs MLMD batch API",
            clew=ours["rate"],
            peer=nodes / peer["load_s"] if mlmd else None,
            peer_name="ML Metadata put_artifacts/executions/events",
            note=f"MLMD batches of 10,000; loaded in {peer['load_s']:.0f} s, "
            f"{nodes / peer['load_cpu_s']:,.0f} nodes per CPU-s"
            if mlmd
            else "",
            **common,
        ),
        Result(
            operation=f"ingest per call ({PER_CALL_STEPS} steps): start_run + log_input/log_output",
            clew=ours["per_call_rate"],
            peer=peer["per_step_rate"] if mlmd else None,
            peer_name="ML Metadata put_execution",
            note="by-reference sources, one transaction per call (clew) / per step (MLMD); "
            f"per CPU-s: clew {ours['per_call_cpu_rate']:,.0f} nodes"
            + (f", MLMD {peer['per_step_cpu_rate']:,.0f}" if mlmd else ""),
            **common,
        ),
    ]


def walk_results(ours: dict[str, Any], peer: dict[str, Any] | str, nodes: int) -> list[Result]:
    results = []
    for depth in DEPTHS:
        for direction in ("upstream", "downstream"):
            name = f"{direction}-{depth}"
            mine = ours[name]
            theirs = peer[name] if isinstance(peer, dict) else None
            for stat, label in (("p50", "p50"), ("p95", "p95"), ("cold_p50", "p50 first round")):
                note = ""
                if stat == "p50":
                    note = f"{mine['edges']:.0f} edges per walk on average" + (
                        f" (ML Metadata: {theirs['edges']:.0f} events)" if theirs else f"; {peer}"
                    )
                    note += f"; CPU p50 clew {mine['cpu_p50']:.1f} ms" + (
                        f", ML Metadata {theirs['cpu_p50']:.1f} ms" if theirs else ""
                    )
                results.append(
                    Result(
                        benchmark="lineage",
                        operation=f"{direction} {depth} hops, {nodes:,} nodes, {label}",
                        unit="ms",
                        higher_is_better=False,
                        clew=mine[stat],
                        peer=theirs[stat] if theirs else None,
                        peer_name="ML Metadata",
                        target_ratio=TARGET_RATIO if stat == "p50" else None,
                        note=note,
                    )
                )
    return results


def sizes(options: Any) -> list[int]:
    """Graph sizes to build: ``--nodes``, else 10k and 100k, plus 1M with ``--full``."""
    if options.nodes:
        return [options.nodes]
    if options.quick:
        return [10_000]
    return [10_000, 100_000] + ([1_000_000] if options.full else [])


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--nodes", type=int, help="one graph size (default: 10k and 100k)")
    arguments.add_argument("--full", action="store_true", help="also build and walk 1M nodes")
    arguments.add_argument(
        "--mlmd-python",
        default=str(HERE / ".mlmd-venv" / "bin" / "python"),
        help="python of a virtualenv with ml-metadata (skip the peer if it does not exist)",
    )
    options = arguments.parse_args()
    starts = 50 if options.quick else STARTS
    results: list[Result] = []
    for nodes in sizes(options):
        shape = Shape.for_nodes(nodes)
        with tempfile.TemporaryDirectory(prefix="clew-bench-lineage-") as temp:
            started = time.perf_counter()
            ours = measure_clew(Path(temp), shape, starts)
            print(
                f"clew: {shape.nodes:,} nodes ingested in {ours['load_s']:.0f} s", file=sys.stderr
            )
            peer = measure_mlmd(options.mlmd_python, Path(temp), shape, starts)
            print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results += ingest_results(ours, peer, shape.nodes) + walk_results(ours, peer, shape.nodes)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    finish(f"Lineage (SQLite stores; load average {load})", results, options.json)


if __name__ == "__main__":
    main()
