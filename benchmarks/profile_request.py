"""Where one API request's CPU goes: cProfile over the clew app serving one route in a loop.

The app is driven through ASGI in this process's one thread (FastAPI's hop of sync routes to a
worker thread is made inline here, so cProfile sees the whole request; the hop itself is not
in the profile, its cost is in ``bench_load.py``'s CPU per request). ``--route`` picks one of
``bench_load.py``'s hot requests, each with a bearer token: ``resolve`` (the hot path of model
serving, ``GET /api/v1/resolve?ref=churn@champion``), ``read_run`` (``GET /runs/<id>``),
``log_params`` (``POST /runs/<id>/params``, one new param) and ``capture`` (``POST
.../captures``, 10 signed predictions), on a fresh SQLite store, or on PostgreSQL with
``--uri postgresql+psycopg://...`` or ``--postgres``. Prints process CPU per request (the
honest figure on a shared machine; ``--no-profile`` prints only that, for A/B runs) and the
top functions.

    uv run python benchmarks/profile_request.py [--route resolve] [--requests 2000] [--top 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import io
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
from bench_load import capture_body
from starlette.types import ASGIApp, Message

import clew
from clew.client.remote_capture import ARROW_STREAM
from clew.domain import ids
from clew.domain.captures import CaptureTarget
from clew.server.app import create_app
from clew.service import accounts
from clew.store.location import Store, open_store

ROUTES = ("resolve", "read_run", "log_params", "capture")


@dataclass
class Request:
    """One request as the load benchmark sends it; ``body`` is made afresh per request."""

    method: str
    path: str
    query: bytes = b""
    content_type: bytes = b""
    body: Callable[[], bytes] = lambda: b""
    content_encoding: bytes = b""


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


def _prepare(uri: str | None, directory: Path) -> tuple[Store, str, CaptureTarget]:
    """A store with churn@champion -> churn/1 and an admin token."""
    target = uri or str(directory / "store")
    client = clew.connect(target, create=True)
    model = directory / "model.bin"
    model.write_bytes(b"a model")
    with client.start_run(experiment="bench", name="train", capture_code=False) as run:
        logged = run.log_output(model, name="churn-model", type="model")
    version = client.register_model(logged, "churn")
    client.promote("churn/1", "champion", new_alias=True)
    client.close()
    store = open_store(target)
    accounts.create_user(store, "bench", "admin", actor="bench")
    token = accounts.create_token(store, "bench", actor="bench").secret
    return store, token, CaptureTarget(version.id, "churn", version.version, version.digest)


async def call(app: ASGIApp, token: str, request: Request) -> tuple[int, bytes]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"authorization", f"Bearer {token}".encode())]
    body = request.body()
    if request.content_type:
        headers.append((b"content-type", request.content_type))
    if request.content_encoding:
        headers.append((b"content-encoding", request.content_encoding))
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": request.query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    status, answer = 0, []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            answer.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(answer)


def _json(payload: dict[str, Any]) -> Callable[[], bytes]:
    return lambda: json.dumps(payload).encode()


async def _route(app: ASGIApp, token: str, route: str, target: CaptureTarget) -> Request:
    """The request ``route`` names; a run to read and log to is started through the app."""
    if route == "resolve":
        return Request("GET", "/api/v1/resolve", b"ref=churn%40champion")
    start = Request("POST", "/api/v1/runs", content_type=b"application/json")
    start.body = _json({"experiment": "load", "name": "load", "params": {"lr": 0.1}})
    status, answer = await call(app, token, start)
    if status != 201:
        raise RuntimeError(f"starting a run answered {status}: {answer[:300]!r}")
    run = f"/api/v1/runs/{json.loads(answer)['id']}"
    if route == "read_run":
        return Request("GET", run)
    if route == "log_params":
        params = lambda: json.dumps({"params": {f"p{ids.new_id()}": random.random()}}).encode()  # noqa: E731
        return Request("POST", f"{run}/params", content_type=b"application/json", body=params)
    batch = f"batch={ids.new_id()}"
    return Request(
        "POST",
        "/api/v1/models/churn/versions/1/captures",
        batch.encode(),
        ARROW_STREAM.encode(),
        lambda: capture_body(target),
    )


async def _serve(app: ASGIApp, token: str, request: Request, count: int) -> None:
    for _ in range(count):
        if request.path.endswith("/captures"):  # each batch its own idempotency key
            request.query = f"batch={ids.new_id()}".encode()
        status, answer = await call(app, token, request)
        if status not in (200, 201, 204):
            raise RuntimeError(f"{request.path} answered {status}: {answer[:300]!r}")


def profile(
    uri: str | None, options: argparse.Namespace, database_cpu: Callable[[], float] | None = None
) -> None:
    """``database_cpu``, when given, is the database server's CPU seconds so far: its share
    per request is printed beside this process's."""
    with tempfile.TemporaryDirectory() as scratch, patched_thread_hops(not options.threads):
        key = Path(scratch) / "capture-key.pem"
        clew_cli = str(Path(sys.executable).parent / "clew")
        subprocess.run([clew_cli, "keys", "create", str(key)], check=True, capture_output=True)
        os.environ["CLEW_SIGNING_KEY"] = str(key)
        store, token, target = _prepare(uri, Path(scratch))
        try:
            app = create_app(store)
            request = asyncio.run(_route(app, token, options.route, target))
            run: Callable[[int], Awaitable[None]] = functools.partial(_serve, app, token, request)
            asyncio.run(run(50))  # warm-up: caches, compiled statements, pool
            per_request, database = [], []
            for _ in range(options.rounds):
                cpu = time.process_time()
                server = database_cpu() if database_cpu else 0.0
                asyncio.run(run(options.requests))
                per_request.append((time.process_time() - cpu) * 1000 / options.requests)
                if database_cpu:
                    database.append((database_cpu() - server) * 1000 / options.requests)
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            if options.profile:
                profiler.enable()
                asyncio.run(run(options.requests))
                profiler.disable()
        finally:
            store.close()
    rounds = " ".join(f"{ms:.3f}" for ms in per_request)
    print(
        f"{options.route} {request.method} {request.path}: median "
        f"{statistics.median(per_request):.3f} ms of process CPU per request, unprofiled "
        f"(rounds: {rounds})"
    )
    if database:
        print(f"  and {statistics.median(database):.3f} ms of PostgreSQL's CPU per request")
    if not options.profile:
        return
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(options.sort)
    stats.print_stats(options.top)
    if options.callers:
        stats.print_callers(options.callers)
    print(out.getvalue())


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--uri", help="a PostgreSQL URL (default: a fresh SQLite store)")
    options.add_argument(
        "--postgres", action="store_true", help="on a throwaway PostgreSQL cluster started here"
    )
    options.add_argument("--route", choices=ROUTES, default="resolve")
    options.add_argument("--requests", type=int, default=2000)
    options.add_argument("--rounds", type=int, default=1, help="unprofiled rounds (median)")
    options.add_argument("--no-profile", dest="profile", action="store_false")
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
            profile(cluster.create("clew_profile"), arguments, cluster.cpu_seconds)
        return
    profile(arguments.uri, arguments)


if __name__ == "__main__":
    main()
