"""Where one API request's CPU goes: cProfile over the clew app serving one route in a loop.

The app is driven through ASGI in this process's one thread (FastAPI's hop of sync routes to a
worker thread is made inline here, so cProfile sees the whole request; the hop itself is not
in the profile, its cost is in ``bench_load.py``'s CPU per request). The request is the hot
path of model serving, ``GET /api/v1/resolve?ref=churn@champion`` with a bearer token, on a
fresh SQLite store, or on PostgreSQL with ``--uri postgresql+psycopg://...``. Prints process
CPU per request (the honest figure on a shared machine) and the top functions.

    uv run python benchmarks/profile_request.py [--requests 2000] [--uri URL] [--top 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import io
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
from starlette.types import ASGIApp, Message

import clew
from clew.server.app import create_app
from clew.service import accounts
from clew.store.location import Store, open_store

PATH = "/api/v1/resolve"
QUERY = b"ref=churn%40champion"


async def _inline(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


@contextlib.contextmanager
def patched_thread_hops(inline: bool) -> Iterator[None]:
    """With ``inline``, FastAPI runs sync routes and dependencies in this thread (so one
    cProfile sees the whole request) until the block ends."""
    hops = [
        (fastapi.routing, "run_in_threadpool"),
        (fastapi.dependencies.utils, "run_in_threadpool"),
    ]
    originals = [getattr(module, name) for module, name in hops]
    if inline:
        for module, name in hops:
            setattr(module, name, _inline)
    try:
        yield
    finally:
        for (module, name), original in zip(hops, originals, strict=True):
            setattr(module, name, original)


def _prepare(uri: str | None, directory: Path) -> tuple[Store, str]:
    """A store with churn@champion -> churn/1 and an admin token."""
    target = uri or str(directory / "store")
    client = clew.connect(target, create=True)
    model = directory / "model.bin"
    model.write_bytes(b"a model")
    with client.start_run(experiment="bench", name="train", capture_code=False) as run:
        logged = run.log_output(model, name="churn-model", type="model")
    client.register_model(logged, "churn")
    client.promote("churn/1", "champion", new_alias=True)
    client.close()
    store = open_store(target)
    accounts.create_user(store, "bench", "admin", actor="bench")
    return store, accounts.create_token(store, "bench", actor="bench").secret


async def _request(app: ASGIApp, token: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": QUERY,
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _serve(app: ASGIApp, token: str, count: int) -> None:
    for _ in range(count):
        if await _request(app, token) != 200:
            raise RuntimeError("the request was not answered with 200")


def profile(
    uri: str | None, requests: int, top: int, sort: str, inline: bool, callers: str | None = None
) -> None:
    with tempfile.TemporaryDirectory() as scratch, patched_thread_hops(inline):
        store, token = _prepare(uri, Path(scratch))
        try:
            app = create_app(store)
            run: Callable[[int], Awaitable[None]] = functools.partial(_serve, app, token)
            asyncio.run(run(50))  # warm-up: caches, compiled statements, pool
            cpu = time.process_time()
            asyncio.run(run(requests))
            per_request = (time.process_time() - cpu) * 1000 / requests
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            profiler.enable()
            asyncio.run(run(requests))
            profiler.disable()
        finally:
            store.close()
    print(f"{PATH}?{QUERY.decode()}: {per_request:.3f} ms of process CPU per request (unprofiled)")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort)
    stats.print_stats(top)
    if callers:
        stats.print_callers(callers)
    print(out.getvalue())


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--uri", help="a PostgreSQL URL (default: a fresh SQLite store)")
    options.add_argument(
        "--postgres", action="store_true", help="on a throwaway PostgreSQL cluster started here"
    )
    options.add_argument("--requests", type=int, default=2000)
    options.add_argument("--top", type=int, default=30)
    options.add_argument("--sort", default="tottime", help="a pstats key: tottime, cumulative")
    options.add_argument(
        "--threads",
        action="store_true",
        help="hop sync routes and dependencies to worker threads as the server does (the "
        "per-request CPU then includes the hops; the profile sees only this thread)",
    )
    options.add_argument("--callers", help="also print who calls functions matching this regex")
    arguments = options.parse_args()
    if arguments.postgres:
        from bench_load import postgres

        with postgres() as cluster:
            uri = cluster.create("clew_profile")
            profile(
                uri,
                arguments.requests,
                arguments.top,
                arguments.sort,
                not arguments.threads,
                arguments.callers,
            )
        return
    profile(
        arguments.uri,
        arguments.requests,
        arguments.top,
        arguments.sort,
        not arguments.threads,
        arguments.callers,
    )


if __name__ == "__main__":
    main()
