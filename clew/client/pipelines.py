"""``@clew.step`` and ``clew.pipeline``: lineage recorded by calling functions, and step caching.

A step is a function whose data arguments (``pathlib.Path``, pandas DataFrames, artifacts
logged earlier) are logged as its run's inputs and whose return values (DataFrames, paths,
models, plain JSON values, or a tuple of them) as its outputs; every other argument is a
parameter. Its cache key is the digest of its source code, parameters and input digests: when
an earlier run of the step with that key FINISHED, the step is not run again — its outputs are
read back from the store (digest-checked), a run tagged ``clew.step.reused_from`` records the
reuse, and a log line says so. A step that raises leaves a FAILED run with the inputs it had
recorded. ``with clew.pipeline("name"):`` groups the steps of one execution under a parent run.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from clew.domain import digests
from clew.domain.pipelines import (
    PIPELINE_KIND,
    PIPELINE_TAG,
    STEP_KEY_TAG,
    STEP_KIND,
    STEP_OUTPUTS_TAG,
    STEP_REUSED_TAG,
    CachedStep,
    PipelineView,
)
from clew.domain.records import ArtifactRecord
from clew.domain.run_fields import param_text
from clew.errors import InvalidInputError

if TYPE_CHECKING:
    from types import TracebackType

    from clew.client.client import Client
    from clew.client.run import ActiveRun

log = logging.getLogger("clew.pipelines")
P = ParamSpec("P")
R = TypeVar("R")
_JSON_TYPES = (str, int, float, bool, type(None), list, dict)
_local = threading.local()


class Pipeline:
    """One execution of a pipeline: a parent run whose children are the steps called inside."""

    def __init__(self, client: Client, name: str, experiment: str | None) -> None:
        self.client = client
        self.name = name
        self.experiment = experiment or name
        self.executed: list[str] = []
        self.skipped: list[str] = []
        self._run: ActiveRun | None = None

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def run(self) -> ActiveRun:
        if self._run is None:
            raise InvalidInputError(f"pipeline {self.name!r} has not started; use it in `with`.")
        return self._run

    def __enter__(self) -> Pipeline:
        self._run = self.client.start_run(
            self.experiment, self.name, PIPELINE_KIND, tags={PIPELINE_TAG: self.name}
        )
        _stack().append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _stack().remove(self)
        self.run.__exit__(exc_type, exc, tb)


def pipeline(name: str, *, experiment: str | None = None, client: Client | None = None) -> Pipeline:
    """``with clew.pipeline("churn"):`` — the steps called inside become its child runs."""
    return Pipeline(client or _default_client(), name, experiment)


def show_pipeline(ref: str, *, client: Client | None = None) -> PipelineView:
    """A pipeline execution (its run id, or a pipeline name for the newest) and its steps."""
    return (client or _default_client())._service.pipelines.show(ref)


class Step(Generic[P, R]):
    """A function whose calls are recorded as step runs and skipped when already done."""

    def __init__(self, func: Callable[P, R], name: str | None) -> None:
        self._func = func
        self.name = name or func.__name__
        self._signature = inspect.signature(func)
        self.code_digest = _code_digest(func)
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        current = _current()
        client = current.client if current else _default_client()
        data, params = self._arguments(args, kwargs)
        key = self.cache_key(data, params)
        cached = client._service.pipelines.find_cached_step(key)
        if cached is not None:
            result: R = self._reuse(client, current, cached, key, data, params)
            return result
        return self._execute(client, current, key, data, params, args, kwargs)

    def cache_key(self, data: Mapping[str, Any], params: Mapping[str, str]) -> str:
        """The digest of this step's code, its parameters and its inputs' digests."""
        return digests.digest_json(
            {
                "step": self.name,
                "code": self.code_digest,
                "params": dict(params),
                "inputs": {name: _input_digest(value) for name, value in data.items()},
            }
        )

    def _arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Data arguments (logged as inputs) apart from parameters (logged as params)."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as error:
            raise InvalidInputError(f"step {self.name!r}: {error}.") from error
        bound.apply_defaults()
        data, params = {}, {}
        for name, value in bound.arguments.items():
            if _is_data(value):
                data[name] = value
            else:
                params[name] = param_text(name, _plain(self.name, name, value))
        return data, params

    def _execute(
        self,
        client: Client,
        current: Pipeline | None,
        key: str,
        data: Mapping[str, Any],
        params: Mapping[str, str],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        with self._start(client, current, {STEP_KEY_TAG: key}, params) as run:
            for name, value in data.items():
                _log_input(run, self.name, name, value)
            result = self._func(*args, **kwargs)
            outputs = _record_outputs(run, self.name, result)
            run.set_tag(STEP_OUTPUTS_TAG, json.dumps(outputs, sort_keys=True))
        if current is not None:
            current.executed.append(self.name)
        return result

    def _reuse(
        self,
        client: Client,
        current: Pipeline | None,
        cached: CachedStep,
        key: str,
        data: Mapping[str, Any],
        params: Mapping[str, str],
    ) -> Any:
        outputs = cached.outputs
        result = _rebuild(client, outputs)
        tags = {
            STEP_KEY_TAG: key,
            STEP_REUSED_TAG: cached.run_id,
            STEP_OUTPUTS_TAG: json.dumps(outputs, sort_keys=True),
        }
        with self._start(client, current, tags, params) as run:
            for name, value in data.items():
                _log_input(run, self.name, name, value)
            for artifact_id in _artifact_ids(outputs):
                run.log_output(client._service.artifacts.get(artifact_id))
        log.info(
            "clew: step %s skipped: same code, parameters and inputs as run %s; its outputs "
            "were reused",
            self.name,
            cached.run_id,
        )
        if current is not None:
            current.skipped.append(self.name)
        return result

    def _start(
        self,
        client: Client,
        current: Pipeline | None,
        tags: Mapping[str, str],
        params: Mapping[str, str],
    ) -> ActiveRun:
        experiment = current.experiment if current else "pipelines"
        parent = current.run if current else None
        return client.start_run(
            experiment, self.name, STEP_KIND, parent=parent, params=params, tags=tags
        )


@overload
def step(func: Callable[P, R], *, name: str | None = None) -> Step[P, R]: ...


@overload
def step(
    func: None = None, *, name: str | None = None
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    func: Callable[P, R] | None = None, *, name: str | None = None
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """``@clew.step`` or ``@clew.step(name="train")``: record and cache calls of a function."""
    if func is not None:
        return Step(func, name)
    return lambda wrapped: Step(wrapped, name)


# --- inputs ---------------------------------------------------------------------------------


def _is_data(value: Any) -> bool:
    return isinstance(value, Path | ArtifactRecord) or _is_frame(value)


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_parquet")


def _plain(step_name: str, name: str, value: Any) -> Any:
    if isinstance(value, _JSON_TYPES):
        return value
    raise InvalidInputError(
        f"step {step_name!r} got a {type(value).__name__} for {name!r}; pass data as a "
        "pathlib.Path, a DataFrame or a logged artifact, and parameters as JSON values."
    )


def _input_digest(value: Any) -> str:
    """The digest the input is logged under, computed without storing anything."""
    if isinstance(value, ArtifactRecord):
        return value.digest
    if isinstance(value, Path):
        if not value.exists():
            raise InvalidInputError(f"{value} does not exist; check the path and retry.")
        return _path_digest(value)
    return _frame_fingerprint(value)


def _frame_fingerprint(frame: Any) -> str:
    """A DataFrame's content as a digest: pandas' per-row hashes (index included), column
    names and dtypes — a tenth of the CPU of writing the Parquet it is stored as."""
    import pandas

    rows = pandas.util.hash_pandas_object(frame, index=True).to_numpy()
    header = json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode()
    return digests.digest_chunks([header, rows.tobytes()])


def _path_digest(path: Path) -> str:
    if path.is_dir():
        return digests.manifest_digest(
            {
                item.relative_to(path).as_posix(): digests.digest_file(item)
                for item in sorted(path.rglob("*"))
                if item.is_file()
            }
        )
    return digests.digest_file(path)


def _log_input(run: ActiveRun, step_name: str, name: str, value: Any) -> None:
    run.log_input(value, name=f"{step_name}.{name}" if _is_frame(value) else None)


# --- outputs --------------------------------------------------------------------------------


def _record_outputs(run: ActiveRun, step_name: str, result: Any) -> dict[str, Any]:
    """Log what the step returned and describe it, so a later skip can rebuild it."""
    items = list(result) if isinstance(result, tuple) else [result]
    described = [_record_output(run, f"{step_name}.output{i}", v) for i, v in enumerate(items)]
    return {"tuple": isinstance(result, tuple), "items": described}


def _record_output(run: ActiveRun, name: str, value: Any) -> dict[str, Any]:
    if _is_frame(value):
        artifact = run.log_output(value, name=name)
        return {"kind": "dataframe", "artifact_id": artifact.id}
    if isinstance(value, Path):
        artifact = run.log_output(value)
        return {"kind": "path", "artifact_id": artifact.id, "path": str(value)}
    if isinstance(value, ArtifactRecord):
        return {"kind": "artifact", "artifact_id": run.log_output(value).id}
    if isinstance(value, _JSON_TYPES):
        json.dumps(value)  # refuses what JSON cannot hold before anything is recorded
        return {"kind": "value", "value": value}
    artifact = run.log_model(value, name=name)
    return {"kind": "model", "artifact_id": artifact.id}


def _artifact_ids(outputs: Mapping[str, Any]) -> list[str]:
    return [item["artifact_id"] for item in outputs["items"] if "artifact_id" in item]


def _rebuild(client: Client, outputs: Mapping[str, Any]) -> Any:
    """The values a step returned, read back from the store (every byte digest-checked)."""
    values = [_rebuild_one(client, item) for item in outputs["items"]]
    return tuple(values) if outputs["tuple"] else values[0]


def _rebuild_one(client: Client, item: Mapping[str, Any]) -> Any:
    kind = item["kind"]
    if kind == "value":
        return item["value"]
    artifact = client._service.artifacts.get(item["artifact_id"])
    if kind == "artifact":
        return artifact
    if kind == "path":
        target = Path(item["path"])
        if not target.exists() or _path_digest(target) != artifact.digest:
            client._service.artifacts.export(artifact, target)
        return target
    with tempfile.TemporaryDirectory(prefix="clew-step-") as temp:
        exported = client._service.artifacts.export(artifact, Path(temp) / "output")
        if kind == "dataframe":
            import pandas

            return pandas.read_parquet(exported)
        from clew.integrations import flavors

        return flavors.load(exported)


# --- helpers --------------------------------------------------------------------------------


def _code_digest(func: Callable[..., Any]) -> str:
    """The step's identity as code: its source text, or its bytecode when there is no source."""
    try:
        return digests.digest_bytes(inspect.getsource(func).encode())
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        text = repr((code.co_code, code.co_consts)) if code else repr(func)
        return digests.digest_bytes(text.encode())


def _stack() -> list[Pipeline]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    stack: list[Pipeline] = _local.stack
    return stack


def _current() -> Pipeline | None:
    stack = _stack()
    return stack[-1] if stack else None


def _default_client() -> Client:
    from clew.client.default import get_client

    return get_client()
