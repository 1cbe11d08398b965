"""Where the server's CPU goes on ``POST /api/v1/lineage``: cProfile over the clew app.

The app is driven through ASGI in this one thread, as ``profile_request.py`` drives it (sync
routes run inline, so cProfile sees the whole request), with the same bodies
``bench_openlineage.py`` sends batched: ``--batch`` RunEvents per request, gzip, a bearer
token, on a fresh SQLite store. The bodies are built and compressed before the clock starts,
so the figure is the server's alone: process CPU per 1,000 events, then the top functions.

    uv run --group bench python benchmarks/profile_openlineage.py [--events 10000] [--top 30]

``--top 0`` prints only the CPU figure; run it from another checkout's interpreter
(``/work/main/.venv/bin/python benchmarks/profile_openlineage.py --top 0``) for a same-minutes
A/B of two versions of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gzip
import io
import json
import pstats
import tempfile
import time
from pathlib import Path

from bench_openlineage import events
from profile_request import Request, call, patched_thread_hops
from starlette.types import ASGIApp

import clew
from clew.server.app import create_app
from clew.service import accounts
from clew.store.location import Store, open_store

PATH = "/api/v1/lineage"


def _prepare(directory: Path) -> tuple[Store, str]:
    target = str(directory / "store")
    clew.connect(target, create=True).close()
    store = open_store(target)
    accounts.create_user(store, "bench", "admin", actor="bench")
    return store, accounts.create_token(store, "bench", actor="bench").secret


def _bodies(count: int, batch: int, tag: str) -> list[bytes]:
    sent = events(count, tag)
    return [
        gzip.compress(json.dumps(sent[start : start + batch]).encode(), compresslevel=3)
        for start in range(0, count, batch)
    ]


async def _post(app: ASGIApp, token: str, body: bytes) -> None:
    request = Request(
        "POST", PATH, content_type=b"application/json", body=lambda: body, content_encoding=b"gzip"
    )
    status, answer = await call(app, token, request)
    if status != 201:
        raise RuntimeError(f"POST {PATH} was answered with {status}, not 201: {answer[:300]!r}")


async def _send_all(app: ASGIApp, token: str, bodies: list[bytes]) -> None:
    for body in bodies:
        await _post(app, token, body)


def profile(count: int, batch: int, top: int, sort: str) -> None:
    with tempfile.TemporaryDirectory() as scratch, patched_thread_hops(inline=True):
        store, token = _prepare(Path(scratch))
        try:
            app = create_app(store)
            asyncio.run(_send_all(app, token, _bodies(batch, batch, "warm")))
            timed = _bodies(count, batch, "timed")
            profiled = _bodies(count, batch, "profiled") if top else []
            cpu = time.process_time()
            asyncio.run(_send_all(app, token, timed))
            per_thousand = (time.process_time() - cpu) * 1000 * 1000 / count
            profiler = cProfile.Profile(time.process_time)
            if top:
                profiler.enable()
                asyncio.run(_send_all(app, token, profiled))
                profiler.disable()
        finally:
            store.close()
    print(
        f"POST {PATH}, {batch} events/request, gzip: {per_thousand:.1f} ms of process CPU per "
        f"1,000 events (unprofiled) = {1000 * 1000 / per_thousand:,.0f} events per CPU-s "
        f"({1000 * 1000 / per_thousand / 5000:.2f}x the 5,000/s target)"
    )
    if not top:
        return
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    print(out.getvalue())


def main() -> None:
    options = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    options.add_argument("--events", type=int, default=10_000)
    options.add_argument("--batch", type=int, default=1_000)
    options.add_argument("--top", type=int, default=30, help="0: the CPU figure, no profile")
    options.add_argument("--sort", default="tottime", help="a pstats key: tottime, cumulative")
    arguments = options.parse_args()
    profile(arguments.events, arguments.batch, arguments.top, arguments.sort)


if __name__ == "__main__":
    main()
