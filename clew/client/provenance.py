"""A run's provenance, recorded automatically: code revision, environment, command line.

Facts are gathered once per process (a training script is one process) and recorded as
``code`` and ``environment`` artifacts, so "which models came from commit X" is a lineage
query. ``refresh()`` forgets them, for long-lived processes that change code.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clew.domain import digests
from clew.integrations import git

ML_LIBRARIES = (
    "clew",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "pyarrow",
    "torch",
    "tensorflow",
    "keras",
    "jax",
    "xgboost",
    "lightgbm",
    "catboost",
    "statsmodels",
    "transformers",
    "onnx",
    "onnxruntime",
    "polars",
    "duckdb",
    "joblib",
    "cloudpickle",
)

_lock = threading.Lock()
_cache: dict[str, Any] = {}
_generation = 0


@dataclass(frozen=True)
class CodeFacts:
    digest: str
    name: str
    properties: dict[str, Any]
    diff: bytes
    root: str = ""


def command_line() -> str:
    return " ".join(
        [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    )


def invocation(root: str | None) -> dict[str, Any]:
    """How this process was started, so ``clew reproduce`` can start it again: the full
    ``sys.argv`` and the working directory, both relative to the repository ``root`` when
    they lie inside it (a checkout elsewhere then runs the same command)."""
    cwd = Path.cwd()
    argv = [str(item) for item in sys.argv] or ["python"]
    script = script_path()
    if script is not None and argv[0] and Path(argv[0]).name == script.name:
        argv[0] = relative_path(script.resolve(), root)
    return {"argv": argv, "cwd": relative_path(cwd.resolve(), root), "in_repository": bool(root)}


def relative_path(path: Path, root: str | None) -> str:
    """``path`` relative to the repository ``root`` when inside it, else absolute."""
    if root:
        try:
            return path.relative_to(Path(root).resolve()).as_posix() or "."
        except ValueError:
            pass
    return str(path)


def script_path() -> Path | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path) if path else None


def environment() -> dict[str, Any]:
    """Python, platform and the versions of installed ML libraries (cached per process)."""
    with _lock:
        if "environment" not in _cache:
            libraries = {}
            for name in ML_LIBRARIES:
                try:
                    libraries[name] = importlib.metadata.version(name)
                except importlib.metadata.PackageNotFoundError:
                    continue
            _cache["environment"] = {
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "platform": platform.platform(),
                "machine": platform.machine(),
                "libraries": libraries,
            }
        facts: dict[str, Any] = _cache["environment"]
        return facts


def code(cwd: Path | None = None) -> CodeFacts | None:
    """The git state around the working directory (cached per process), or None."""
    with _lock:
        if "code" not in _cache:
            _cache["code"] = _code_facts(Path(cwd or os.getcwd()))
        facts: CodeFacts | None = _cache["code"]
        return facts


def _code_facts(cwd: Path) -> CodeFacts | None:
    state = git.capture(cwd, script_path())
    if state is None:
        return None
    diff_digest = digests.digest_bytes(state.diff) if state.dirty and state.diff else None
    properties = {
        "commit": state.commit,
        "branch": state.branch,
        "dirty": state.dirty,
        "diff_digest": diff_digest,
        "remote": state.remote_url,
        "script": state.script_path,
        "permalink": state.permalink,
    }
    name = Path(state.root).name if not state.remote_url else _repo_name(state.remote_url)
    return CodeFacts(
        digests.code_digest(properties),
        name,
        properties,
        state.diff if diff_digest else b"",
        state.root,
    )


def _repo_name(remote: str) -> str:
    tail = remote.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.removesuffix(".git") or "repository"


def refresh() -> None:
    """Forget cached facts so the next run re-captures code and environment."""
    global _generation
    with _lock:
        _cache.clear()
        _generation += 1


def generation() -> int:
    """Bumped by ``refresh()``, so clients know their recorded capture ids are stale."""
    return _generation
